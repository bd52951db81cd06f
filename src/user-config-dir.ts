/**
 * Where pglease's clients (the CLI, pglease/testing) keep what they hold for the user: lease tokens
 * (src/cli/token-store.ts) and the CA certificates of TLS hosts (src/tls/client-ca.ts).
 * $PGLEASE_HOME, else $XDG_CONFIG_HOME/pglease, else ~/.config/pglease.
 */
import { homedir } from 'node:os';
import path from 'node:path';

export function userConfigDirectory(env: Record<string, string | undefined>): string {
  if (env.PGLEASE_HOME) return env.PGLEASE_HOME;
  const config = env.XDG_CONFIG_HOME || path.join(env.HOME || homedir(), '.config');
  return path.join(config, 'pglease');
}
