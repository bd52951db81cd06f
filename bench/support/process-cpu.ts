/**
 * CPU time of processes, from /proc (Linux), for benchmarks that report CPU per operation: a figure
 * that moves less with the machine's load than throughput does, since another process's work on
 * the same cores delays ours but is not counted as ours.
 */
import { readdir, readFile } from 'node:fs/promises';

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux everywhere). */
const CLOCK_TICKS = 100;

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces), from the state on; [] once it is gone. */
export async function statFields(pid: number | string): Promise<string[]> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat === '' ? [] : stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU time (user + system) a process has used, in µs; 0 once it is gone. */
export async function cpuMicros(pid: number): Promise<number> {
  const fields = await statFields(pid);
  // utime and stime are the 12th and 13th fields from the state on
  return ((Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) * 1_000_000) / CLOCK_TICKS;
}

/** The postmaster of a Postgres backend: its parent process. */
export async function postmasterOf(backendPid: number): Promise<number> {
  // the parent pid is the 2nd field from the state on
  return Number((await statFields(backendPid))[1]);
}

/**
 * CPU time (µs) a Postgres server has used so far: the postmaster's own, its ended children's
 * (cutime and cstime: a backend's time moves there when the postmaster reaps it) and its live
 * children's. The difference of two readings counts every session, including those that began or
 * ended in between.
 */
export async function serverCpuMicros(postmaster: number): Promise<number> {
  const own = await statFields(postmaster);
  let ticks = Number(own[11] ?? 0) + Number(own[12] ?? 0) + Number(own[13] ?? 0) + Number(own[14] ?? 0);
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name));
  for (const fields of await Promise.all(pids.map(statFields))) {
    if (Number(fields[1]) === postmaster) ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
  }
  return (ticks * 1_000_000) / CLOCK_TICKS;
}
