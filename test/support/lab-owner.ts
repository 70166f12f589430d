// A lab owner that dies without cleaning up, for the stale-lab test in lab-network.test.ts: it
// builds a one-host lab, starts `sleep` inside the host namespace, prints
// `{"prefix":...,"sleepPid":N}` and waits to be killed. Killed with SIGKILL, its 'exit' hook
// never runs, so the namespaces and the sleep stay behind for LabNetwork.cleanStale() to find.

import { LabNetwork } from '../../src/lab/lab-network.js';

/** The owner waits at most this long for its SIGKILL, so it cannot outlive a broken test. */
const ownerLifetimeMs = 30_000;

const lab = LabNetwork.create({ hosts: 1 });
const sleeper = lab.spawnIn(lab.hostNamespace('h1'), 'sleep', ['60'], { stdio: 'ignore', detached: true });
sleeper.unref();
process.stdout.write(`${JSON.stringify({ prefix: lab.prefix, sleepPid: sleeper.pid })}\n`);
setTimeout(() => {
  lab.destroy();
  process.exit(1);
}, ownerLifetimeMs);
