// Worker threads adding into shared memory with Atomics, and messages back:
// the results are the same however they interleave (tools/realprogs.sh,
// with and without the shim).
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

if (isMainThread) {
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
