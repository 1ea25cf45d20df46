// kafkajs producer + admin, driven by test_other_clients.py:
//   node kafkajs_produce.js BOOTSTRAP TOPIC COUNT
// Creates TOPIC with 3 partitions (admin.createTopics), checks it is listed, produces COUNT keyed
// messages with headers (idempotent, acks=-1, half of them gzip-compressed), then prints one
// JSON line: the send() results, fetchTopicOffsets and fetchTopicOffsetsByTimestamp.
const { Kafka, logLevel, CompressionTypes } = require('kafkajs');

async function main() {
  const [bootstrap, topic, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  if (!bootstrap.startsWith('127.0.0.1:')) throw new Error('loopback only');
  const kafka = new Kafka({
    brokers: [bootstrap], clientId: 'tidewater-tests', logLevel: logLevel.WARN,
    connectionTimeout: 5000, requestTimeout: 15000, retry: { retries: 5 },
  });
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  const again = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] });
  const listed = (await admin.listTopics()).includes(topic);
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const ts = 1650000000000;
  const messages = Array.from({ length: count }, (_, i) => ({
    key: `k${i}`, value: `js-${i}`, headers: { n: `${i}`, src: 'kafkajs' }, timestamp: `${ts + i}`,
  }));
  const half = Math.floor(count / 2);
  const sent = [];
  sent.push(...await producer.send({ topic, acks: -1, messages: messages.slice(0, half) }));
  sent.push(...await producer.send({
    topic, acks: -1, compression: CompressionTypes.GZIP, messages: messages.slice(half),
  }));
  await producer.disconnect();

  const offsets = await admin.fetchTopicOffsets(topic);
  const byTs = await admin.fetchTopicOffsetsByTimestamp(topic, ts + half);
  await admin.disconnect();
  console.log(JSON.stringify({
    created, again, listed,
    partitions: metadata.topics[0].partitions.map((p) => ({ id: p.partitionId, leader: p.leader })),
    sent, offsets, byTs,
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
