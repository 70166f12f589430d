// Goal: prove that `bin/raftvip`, run as a real process exactly as an operator would run it,
// explains itself (--help), reports the package.json version (--version, from any working
// directory), rejects unknown commands, unknown options and bad values with exit code 2 and a
// clear message without doing anything, and hands `sim` over to the simulator.

import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { runRaftvip } from './support/run-raftvip.js';

// This file runs as dist/test/cli.test.js; the repository root is two levels up.
const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};
const simCliPath = fileURLToPath(new URL('../src/sim/cli.js', import.meta.url));



t.test('--help explains raftvip and lists the commands', async (t) => {
  const result = await runRaftvip(['--help']);
  t.equal(result.code, 0, 'exit code 0');
  t.equal(result.stderr, '', 'nothing on stderr');
  t.match(result.stdout, /virtual IP/, 'says what raftvip is');
  t.match(result.stdout, /Raft/, 'mentions Raft');
  t.match(result.stdout, /Commands:/, 'has a command list');
  t.match(result.stdout, /raftvip sim\s/, 'lists the sim command');
  t.match(result.stdout, /--version/, 'lists --version');
});

t.test('-h is --help', async (t) => {
  const [short, long] = await Promise.all([runRaftvip(['-h']), runRaftvip(['--help'])]);
  t.equal(short.code, 0);
  t.equal(short.stdout, long.stdout);
});

t.test('sim --help lists the simulator options', async (t) => {
  const result = await runRaftvip(['sim', '--help']);
  t.equal(result.code, 0, 'exit code 0');
  for (const option of ['--seeds', '--seed', '--nodes', '--verbose']) {
    t.match(result.stdout, option, `lists ${option}`);
  }
});

t.test('--version prints the package.json version', async (t) => {
  const result = await runRaftvip(['--version']);
  t.equal(result.code, 0, 'exit code 0');
  t.equal(result.stdout.trim(), packageJson.version);
  t.equal(result.stderr, '', 'nothing on stderr');
});

t.test('--version does not depend on the working directory', async (t) => {
  const result = await runRaftvip(['--version'], { cwd: tmpdir() });
  t.equal(result.code, 0, 'exit code 0');
  t.equal(result.stdout.trim(), packageJson.version);
});

const usageErrors: ReadonlyArray<{ args: string[]; message: RegExp; help: string }> = [
  { args: ['frobnicate'], message: /Unknown command: frobnicate/, help: 'raftvip --help' },
  { args: ['--frobnicate'], message: /Unknown argument: frobnicate/, help: 'raftvip --help' },
  { args: [], message: /No command given/, help: 'raftvip --help' },
  { args: ['sim', 'extra'], message: /Unknown argument: extra/, help: 'raftvip sim --help' },
  { args: ['sim', '--frobnicate'], message: /Unknown argument: frobnicate/, help: 'raftvip sim --help' },
  { args: ['sim', '--seeds', '0'], message: /--seeds must be an integer from 1/, help: 'raftvip sim --help' },
  { args: ['sim', '--seeds', 'many'], message: /--seeds must be an integer/, help: 'raftvip sim --help' },
  { args: ['sim', '--seeds'], message: /Not enough arguments following: seeds/, help: 'raftvip sim --help' },
  { args: ['sim', '--seed', '-1'], message: /--seed must be an integer from 0/, help: 'raftvip sim --help' },
  { args: ['sim', '--seed', '1', '--seed', '2'], message: /--seed was given more than once/, help: 'raftvip sim --help' },
  { args: ['sim', '--seed', '1', '--seeds', '2'], message: /mutually exclusive/, help: 'raftvip sim --help' },
  { args: ['sim', '--nodes', '4'], message: /Choices: 3, 5/, help: 'raftvip sim --help' },
];

for (const { args, message, help } of usageErrors) {
  t.test(`usage error: raftvip ${args.join(' ')}`, async (t) => {
    const result = await runRaftvip(args);
    t.equal(result.code, 2, 'exit code 2');
    t.equal(result.stdout, '', 'nothing on stdout');
    t.match(result.stderr, message, 'says what is wrong');
    t.match(result.stderr, `Run '${help}' for usage.`, 'points at the right help');
    t.notMatch(result.stderr, /simulator/, 'the simulator was not started');
  });
}

t.test('sim hands over to the simulator', async (t) => {
  t.ok(existsSync(simCliPath), `${simCliPath} is built`);
  const result = await runRaftvip(['sim', '--seed', '1', '--nodes', '3']);
  t.notMatch(result.stderr, /cannot load the simulator|does not export runSimCli/, 'simulator loaded');
  t.equal(result.code, 0, 'seed 1 passes every checker');
  t.match(result.stdout, /seed 1 \(3 nodes\): ok/, 'prints the verdict');
  t.match(result.stdout, /leader in term/, 'prints the trace of a single replayed seed');
});

t.test('bin/raftvip takes the lean vip-release path for exactly `vip release [--config FILE]`', async (t) => {
  const { fastVipReleaseArgs } = await import('../src/cli/vip-release.js');
  t.same(fastVipReleaseArgs(['vip', 'release']), { configFile: '/etc/raftvip/raftvip.yaml' });
  t.same(fastVipReleaseArgs(['vip', 'release', '--config', 'a.yaml']), { configFile: 'a.yaml' });
  t.same(fastVipReleaseArgs(['--config=a.yaml', 'vip', 'release']), { configFile: 'a.yaml' });
  for (const args of [['vip'], ['vip', 'release', '--help'], ['vip', 'release', '--config'], ['release', 'vip'], ['vip', 'release', '--config', 'a', '--config', 'b'], ['vip', 'release', 'x']]) {
    t.equal(fastVipReleaseArgs(args), null, `full command line for ${args.join(' ')}`);
  }
  const missing = await runRaftvip(['vip', 'release', '--config', '/nonexistent/raftvip.yaml']);
  t.equal(missing.code, 1, 'an unreadable config is exit 1 on the lean path');
  t.match(missing.stderr, /RAFTVIP_CONFIG_UNREADABLE/);
});
