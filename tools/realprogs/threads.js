// Worker threads adding into shared memory with Atomics, and messages back:
// the results are the same however they interleave (tools/realprogs.sh,
// with and without the shim).
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

const fs = require('fs');
const serve = isMainThread ? process.argv[2] === '--serve' && process.argv[3] : workerData.stop;

if (serve && isMainThread) {
  // The ends group: workers that run until the file argv[3] exists, and a
  // main thread that prints a beat every 0.1 s meanwhile (its "answer").
  const shared = new Int32Array(new SharedArrayBuffer(4));
  for (let k = 1; k <= 4; k++) new Worker(__filename, { workerData: { k, buf: shared.buffer, stop: serve } });
  const beat = setInterval(() => {
    if (fs.existsSync(serve)) { clearInterval(beat); process.exit(0); }
    console.log('beat');
  }, 100);
} else if (serve) {
  const shared = new Int32Array(workerData.buf);
  while (!fs.existsSync(serve)) { Atomics.add(shared, 0, workerData.k); Atomics.wait(shared, 0, -1, 10); }
} else if (isMainThread) {
  const shared = new Int32Array(new SharedArrayBuffer(4));
  let pending = 4, squares = 0;
  for (let k = 1; k <= 4; k++) {
    const w = new Worker(__filename, { workerData: { k, buf: shared.buffer } });
    w.on('message', (m) => {
      squares += m;
      if (--pending === 0) console.log(`total=${Atomics.load(shared, 0)} squares=${squares}`);
    });
    w.on('error', (e) => { console.error(e); process.exitCode = 1; });
  }
} else {
  const shared = new Int32Array(workerData.buf);
  for (let i = 0; i < 200000; i++) Atomics.add(shared, 0, (i * workerData.k) % 7);
  parentPort.postMessage(workerData.k * workerData.k);
}
