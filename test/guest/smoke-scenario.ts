// The guest's smoke scenario: is the qemu guest (src/lab/qemu-guest.ts) the kernel the IPVS
// scenarios need? In the guest it records, without asserting: the kernel release, whether
// generic netlink resolves family `IPVS` (the kernel loads ip_vs on demand for the lookup),
// whether `modprobe ip_vs` succeeds and /proc/net/ip_vs exists, what `ipvsadm -Ln` and
// `nft --version` print, whether two network namespaces joined by a veth pair pass a ping,
// whether a bridge can be created, whether an nftables NAT ruleset (dnat, masquerade, ct state)
// loads, and which modules were loaded by the end. On the host, `judge` asserts each of these,
// and that the guest's kernel is not the host's.
//
// It runs first (scenarios.ts), so ip_vs is normally not loaded before its lookup and the
// lookup exercises on-demand loading; `ipVsLoadedBeforeLookup` records whether it did.

import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import type { Test } from 'tap';
import netlink from 'netlink';
import type { GuestScenario } from './scenario.js';
import { runCommand, type CommandOutcome } from './guest-command.js';

/** One generic netlink request (the kernel may load ip_vs to answer it). */
const genlRequestTimeoutMs = 10_000;
/** Generic netlink family ids are allocated from GENL_MIN_ID upwards. */
const genlFamilyIdMin = 16;

/** Names and addresses used only inside the guest's own namespaces. */
const namespaceA = 'rvg-smoke-a';
const namespaceB = 'rvg-smoke-b';
const addressA = '10.214.0.1';
const addressB = '10.214.0.2';
const natVip = '10.214.0.100';

/** Modules that must be loaded (on demand) by the end of the scenario. */
export const smokeModulesExpected = ['ip_vs', 'nf_tables', 'nft_nat', 'nft_masq', 'nft_ct', 'nft_chain_nat', 'veth', 'bridge'] as const;


export interface SmokeFacts {
  /** `uname -r` in the guest. */
  readonly kernelRelease: CommandOutcome;
  readonly ipVsLoadedBeforeLookup: boolean;
  /** The id generic netlink resolved for family IPVS, or the error. */
  readonly genlIpvs: { readonly familyId: number | null; readonly error: string | null };
  readonly modprobeIpVs: CommandOutcome;
  readonly procNetIpVsExists: boolean;
  readonly ipvsadmList: CommandOutcome;
  readonly nftVersion: CommandOutcome;
  /** Two namespaces and a veth pair between them, addressed and up. */
  readonly vethSetup: CommandOutcome;
  /** busybox ping from A to B over the veth. */
  readonly vethPing: CommandOutcome;
  readonly bridgeAdd: CommandOutcome;
  /** `nft -f` of a NAT table (dnat, masquerade, ct state) in namespace A, then its listing. */
  readonly nftNatLoad: CommandOutcome;
  readonly nftNatList: CommandOutcome;
  /** First column of /proc/modules at the end. */
  readonly loadedModules: readonly string[];
}


/** Runs a command and records what happened; never throws. */

/** Shell commands run with `sh -e` (stops at the first failure): one outcome for all of them. */
function runScript(label: string, commands: readonly string[]): Promise<CommandOutcome> {
  return runCommand('sh', ['-ec', commands.join('\n')], { label });
}

function loadedModules(): string[] {
  return readFileSync('/proc/modules', 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split(' ')[0] ?? '');
}

async function resolveIpvsFamily(): Promise<{ familyId: number | null; error: string | null }> {
  const socket = netlink.createGenericNetlink();
  try {
    const replies = await socket.ctrlRequest(netlink.genl.Commands.GET_FAMILY, { familyName: 'IPVS' }, { timeout: genlRequestTimeoutMs });
    const familyId = replies[0]?.familyId;
    return typeof familyId === 'number' ? { familyId, error: null } : { familyId: null, error: `no familyId in ${JSON.stringify(replies)}` };
  } catch (error) {
    return { familyId: null, error: error instanceof Error ? error.message : String(error) };
  } finally {
    socket.socket.close();
  }
}

const nftNatRuleset = `table ip rvg_smoke {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr ${natVip} tcp dport 80 dnat to ${addressB}:80
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip daddr ${addressB} masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
  }
}
`;

export const smokeScenario: GuestScenario<SmokeFacts> = {
  name: 'guest-smoke',

  async runInGuest(): Promise<SmokeFacts> {
    const kernelRelease = await runCommand('uname', ['-r']);
    const ipVsLoadedBeforeLookup = loadedModules().includes('ip_vs');
    const genlIpvs = await resolveIpvsFamily();
    const modprobeIpVs = await runCommand('modprobe', ['ip_vs']);
    const procNetIpVsExists = existsSync('/proc/net/ip_vs');
    const ipvsadmList = await runCommand('ipvsadm', ['-Ln']);
    const nftVersion = await runCommand('nft', ['--version']);
    try {
      const vethSetup = await runScript(
        'two namespaces and a veth pair between them, addressed and up',
        [
          `ip netns add ${namespaceA}`,
          `ip netns add ${namespaceB}`,
          `ip link add veth-a netns ${namespaceA} type veth peer name veth-b netns ${namespaceB}`,
          `ip -n ${namespaceA} addr add ${addressA}/24 dev veth-a`,
          `ip -n ${namespaceB} addr add ${addressB}/24 dev veth-b`,
          `ip -n ${namespaceA} link set lo up`,
          `ip -n ${namespaceB} link set lo up`,
          `ip -n ${namespaceA} link set veth-a up`,
          `ip -n ${namespaceB} link set veth-b up`,
        ],
      );
      const vethPing = await runCommand('ip', ['netns', 'exec', namespaceA, 'busybox', 'ping', '-c', '1', '-W', '5', addressB]);
      const bridgeAdd = await runCommand('ip', ['-n', namespaceA, 'link', 'add', 'br-smoke', 'type', 'bridge']);
      const nftNatLoad = await runCommand('ip', ['netns', 'exec', namespaceA, 'nft', '-f', '-'], { input: nftNatRuleset });
      const nftNatList = await runCommand('ip', ['netns', 'exec', namespaceA, 'nft', 'list', 'table', 'ip', 'rvg_smoke']);
      return {
        kernelRelease,
        ipVsLoadedBeforeLookup,
        genlIpvs,
        modprobeIpVs,
        procNetIpVsExists,
        ipvsadmList,
        nftVersion,
        vethSetup,
        vethPing,
        bridgeAdd,
        nftNatLoad,
        nftNatList,
        loadedModules: loadedModules(),
      };
    } finally {
      // The scenarios share one guest: leave nothing behind for the next one.
      await runScript('cleanup', [`ip netns del ${namespaceA} || true`, `ip netns del ${namespaceB} || true`]);
    }
  },

  judge(t: Test, facts: SmokeFacts): void {
    const outcome = (name: string, result: CommandOutcome): void => {
      t.ok(result.ok, `${name}: ${result.command} exits 0 (${Math.round(result.durationMs)} ms)`, { exitCode: result.exitCode, stderr: result.stderr });
    };
    outcome('uname', facts.kernelRelease);
    const guestRelease = facts.kernelRelease.stdout.trim();
    t.match(guestRelease, /^\d+\.\d+/, `the guest reports a kernel release (${guestRelease})`);
    t.not(guestRelease, release(), "the guest runs its own kernel, not the host's");

    t.equal(facts.genlIpvs.error, null, 'generic netlink resolves family IPVS without error');
    t.ok(
      facts.genlIpvs.familyId !== null && facts.genlIpvs.familyId >= genlFamilyIdMin,
      `family IPVS has a dynamic id (${facts.genlIpvs.familyId})` + (facts.ipVsLoadedBeforeLookup ? '' : '; the lookup loaded ip_vs on demand'),
    );
    outcome('modprobe ip_vs', facts.modprobeIpVs);
    t.ok(facts.procNetIpVsExists, '/proc/net/ip_vs exists');
    outcome('ipvsadm', facts.ipvsadmList);
    t.match(facts.ipvsadmList.stdout, /IP Virtual Server version/, 'ipvsadm -Ln talks to the kernel');
    outcome('nft --version', facts.nftVersion);
    t.match(facts.nftVersion.stdout, /^nftables v\d/, 'nft prints its version');

    outcome('veth setup', facts.vethSetup);
    outcome('ping over the veth', facts.vethPing);
    outcome('bridge', facts.bridgeAdd);
    outcome('nft NAT ruleset', facts.nftNatLoad);
    outcome('nft list', facts.nftNatList);
    for (const expression of [`dnat to ${addressB}:80`, 'masquerade', 'ct state established,related accept']) {
      t.ok(facts.nftNatList.stdout.includes(expression), `the loaded ruleset holds "${expression}"`);
    }
    for (const module of smokeModulesExpected) t.ok(facts.loadedModules.includes(module), `module ${module} was loaded on demand`);
  },
};
