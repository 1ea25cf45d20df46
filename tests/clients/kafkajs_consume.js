// kafkajs consumer (needs consumer groups):
//   node kafkajs_consume.js BOOTSTRAP TOPIC COUNT
// Subscribes from the beginning with a fresh group, reads COUNT messages, prints them as JSON.
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  if (!bootstrap.startsWith('127.0.0.1:')) throw new Error('loopback only');
  const kafka = new Kafka({ brokers: [bootstrap], clientId: 'tidewater-tests', logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId: `g-${process.pid}-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${count} in 60 s`)), 60000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, offset: message.offset, key: message.key && message.key.toString(),
                   value: message.value && message.value.toString() });
        if (got.length >= count) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(JSON.stringify(got));
}

main().catch((e) => { console.error(e); process.exit(1); });
