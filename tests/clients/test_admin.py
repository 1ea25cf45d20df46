"""Admin operations: CreateTopics (configs, validate-only, errors), DeleteTopics,
CreatePartitions, DeleteRecords, DescribeConfigs, auto-creation on and off."""
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic, ResourceType

from helpers import admin, consume_all, consumer, create_topic, produce

pytestmark = pytest.mark.timeout(90)


def error_name(fut):
    with pytest.raises(KafkaException) as e:
        fut.result(15)
    return e.value.args[0].name()


def test_create_validate_only_configs_and_errors(broker, topic):
    a = admin(broker.bootstrap)
    a.create_topics([NewTopic(topic, 3, 1)], validate_only=True)[topic].result(10)
    assert topic not in a.list_topics(timeout=10).topics, "validate_only created the topic"
    # validate_only still validates.
    bad = topic + "-bad"
    assert error_name(a.create_topics([NewTopic(bad, 1, 1, config={"no.such.config": "1"})],
                                      validate_only=True)[bad]) == "INVALID_CONFIG"
    a.create_topics([NewTopic(topic, 3, 1, config={"retention.ms": "3600000"})])[topic].result(10)
    md = a.list_topics(timeout=10).topics[topic]
    assert len(md.partitions) == 3
    assert error_name(a.create_topics([NewTopic(topic, 1, 1)])[topic]) == "TOPIC_ALREADY_EXISTS"
    assert error_name(a.create_topics([NewTopic(bad, 1, 1, config={"no.such.config": "1"})])[bad]) == "INVALID_CONFIG"
    assert error_name(a.create_topics([NewTopic(bad, 1, 3)])[bad]) == "INVALID_REPLICATION_FACTOR"
    assert error_name(a.create_topics([NewTopic(bad, 0, 1)])[bad]) == "INVALID_PARTITIONS"
    for name in ("bad/name", "..", "a" * 300, "spaces are bad"):
        assert error_name(a.create_topics([NewTopic(name, 1, 1)])[name]) == "TOPIC_EXCEPTION", name  # librdkafka names error 17 so
    assert bad not in a.list_topics(timeout=10).topics
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = a.describe_configs([res])[res].result(10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "delete"


def test_create_many_topics_in_one_request(broker, topic):
    a = admin(broker.bootstrap)
    names = [f"{topic}-{i}" for i in range(10)]
    futs = a.create_topics([NewTopic(n, 1 + i % 4, 1) for i, n in enumerate(names)])
    for f in futs.values():
        f.result(15)
    md = a.list_topics(timeout=10).topics
    assert [len(md[n].partitions) for n in names] == [1 + i % 4 for i in range(10)]


def test_delete_topic_then_recreate_starts_empty(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, [{"value": f"old{i}".encode(), "partition": i % 2} for i in range(20)], acks="all")
    a.delete_topics([topic], operation_timeout=10)[topic].result(15)
    assert topic not in a.list_topics(timeout=10).topics
    assert error_name(a.delete_topics([topic])[topic]) == "UNKNOWN_TOPIC_OR_PART"
    create_topic(broker.bootstrap, topic, 3)
    c = consumer(broker.bootstrap)
    try:
        for p in range(3):
            assert c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) == (0, 0)
    finally:
        c.close()
    produce(broker.bootstrap, topic, [{"value": b"new", "partition": 1}], acks="all")
    got = consume_all(broker.bootstrap, topic, 3, 1)
    assert [(m.partition(), m.offset(), m.value()) for m in got] == [(1, 0, b"new")]
    # And the deletion survives a restart.
    a.delete_topics([topic])[topic].result(15)
    broker.restart()
    assert topic not in admin(broker.bootstrap).list_topics(timeout=10).topics


def test_create_partitions_delete_records_and_delete_topic(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(broker.bootstrap, topic, 2)
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(10)
    assert len(a.list_topics(timeout=10).topics[topic].partitions) == 5
    produce(broker.bootstrap, topic, [{"value": f"v{i}".encode(), "partition": 4} for i in range(10)], acks="all")
    for f in a.delete_records([TopicPartition(topic, 4, 6)]).values():
        assert f.result(10).low_watermark == 6
    got = consume_all(broker.bootstrap, topic, 5, 4, extra={"auto.offset.reset": "earliest"}, start=6)
    assert sorted(m.offset() for m in got) == [6, 7, 8, 9]
    a.delete_topics([topic])[topic].result(10)
    assert topic not in a.list_topics(timeout=10).topics


def test_auto_create_on_by_default_uses_num_partitions(broker_factory, topic):
    b = broker_factory(config='"num.partitions" = 3\n')
    produce(b.bootstrap, topic, [{"value": b"x"}], acks="all")
    md = admin(b.bootstrap).list_topics(timeout=10).topics
    assert len(md[topic].partitions) == 3
    # The default broker: one partition.
    d = broker_factory()
    produce(d.bootstrap, topic, [{"value": b"x"}], acks="all")
    assert len(admin(d.bootstrap).list_topics(timeout=10).topics[topic].partitions) == 1


def check_auto_create_disabled(b, topic):
    a = admin(b.bootstrap)
    md = a.list_topics(topic=topic, timeout=10)
    assert md.topics[topic].error is not None
    assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, md.topics[topic].error
    assert topic not in a.list_topics(timeout=10).topics

    # Produce: the message fails, nothing is created.
    p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 3000})
    errs = []
    p.produce(topic, value=b"x", on_delivery=lambda e, m: errs.append(e))
    p.flush(15)
    assert len(errs) == 1 and errs[0] is not None, errs
    assert errs[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                              KafkaError._MSG_TIMED_OUT), errs[0]

    # ListOffsets for the unknown topic: an error, and still nothing created.
    c = consumer(b.bootstrap)
    try:
        with pytest.raises(KafkaException) as e:
            c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert e.value.args[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
                                          KafkaError._UNKNOWN_TOPIC), e.value
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.time() + 3
        while time.time() < deadline:
            m = c.poll(0.2)
            assert m is None or m.error() is not None, "read a message from a topic that does not exist"
    finally:
        c.close()
    assert topic not in a.list_topics(timeout=10).topics

    # Explicit creation still works.
    create_topic(b.bootstrap, topic, 2)
    produce(b.bootstrap, topic, [{"value": b"y", "partition": 1}], acks="all")
    assert [m.value() for m in consume_all(b.bootstrap, topic, 2, 1)] == [b"y"]


def test_auto_create_disabled_by_config_file(broker_factory, topic):
    check_auto_create_disabled(broker_factory(config="auto.create.topics.enable = false\n"), topic)


def test_auto_create_disabled_by_quoted_key_in_config_file(broker_factory, topic):
    check_auto_create_disabled(broker_factory(config='"auto.create.topics.enable" = false\n'), topic)


def test_auto_create_disabled_by_environment(broker_factory, topic):
    check_auto_create_disabled(broker_factory(env={"TIDEWATER_AUTO_CREATE_TOPICS_ENABLE": "false"}), topic)


def test_bad_config_file_fails_to_start(tmp_path):
    import subprocess

    from conftest import BIN, free_port

    cfg = tmp_path / "bad.toml"
    cfg.write_text("auto.create.topics.enable = \n")  # not TOML
    r = subprocess.run([BIN, "serve", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{free_port()}",
                        "--cores", "1", "--config", str(cfg)], capture_output=True, timeout=30)
    assert r.returncode != 0
    assert r.stderr, "no error message"
