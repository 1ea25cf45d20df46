"""Admin operations: CreateTopics (configs, validate-only, errors), DeleteTopics,
CreatePartitions, DeleteRecords, DescribeConfigs, auto-creation switched off."""
import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic, ResourceType

from conftest import consume_all

pytestmark = pytest.mark.timeout(90)


def test_create_validate_only_configs_and_errors(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)], validate_only=True)[topic].result(10)
    assert topic not in admin.list_topics(timeout=10).topics
    admin.create_topics([NewTopic(topic, 3, 1, config={"retention.ms": "3600000"})])[topic].result(10)
    md = admin.list_topics(timeout=10).topics[topic]
    assert len(md.partitions) == 3
    with pytest.raises(KafkaException, match="TOPIC_ALREADY_EXISTS"):
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    with pytest.raises(KafkaException, match="INVALID_CONFIG"):
        admin.create_topics([NewTopic(topic + "x", 1, 1, config={"no.such.config": "1"})])[topic + "x"].result(10)
    with pytest.raises(KafkaException, match="INVALID_REPLICATION_FACTOR"):
        admin.create_topics([NewTopic(topic + "y", 1, 3)])[topic + "y"].result(10)
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "delete"


def test_create_partitions_delete_records_and_delete_topic(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(10)
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(10)
    assert len(admin.list_topics(timeout=10).topics[topic].partitions) == 5
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(10):
        p.produce(topic, value=f"v{i}".encode(), partition=4)
    assert p.flush(10) == 0
    done = admin.delete_records([TopicPartition(topic, 4, 6)])
    for f in done.values():
        assert f.result(10).low_watermark == 6
    got = consume_all(broker.bootstrap, topic, 5, 4, extra={"auto.offset.reset": "earliest"})
    assert sorted(m.offset() for m in got) == [6, 7, 8, 9]
    admin.delete_topics([topic])[topic].result(10)
    assert topic not in admin.list_topics(timeout=10).topics


def test_auto_create_disabled_by_config_file(broker_factory, topic):
    b = broker_factory(config="auto.create.topics.enable = false\n")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    md = admin.list_topics(topic=topic, timeout=10)
    assert md.topics[topic].error is not None
    assert topic not in admin.list_topics(timeout=10).topics
    p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 3000})
    errs = []
    p.produce(topic, value=b"x", on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert errs and errs[0] is not None
    b.stop()
