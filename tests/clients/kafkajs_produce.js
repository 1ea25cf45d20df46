// Creates a 3-partition topic, produces N keyed messages idempotently with acks=-1, and prints
// the topic's offsets as JSON. Driven by test_other_clients.py.
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, count] = process.argv.slice(2);
  const kafka = new Kafka({ brokers: [bootstrap], clientId: 'tidewater-tests', logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  const messages = Array.from({ length: Number(count) }, (_, i) => ({ key: `k${i}`, value: `js-${i}` }));
  await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();
  console.log(JSON.stringify(await admin.fetchTopicOffsets(topic)));
  await admin.disconnect();
}

main().catch((e) => { console.error(e); process.exit(1); });
