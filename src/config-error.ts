/**
 * The error of a bad configuration value, naming the variable. A module of its own so that the
 * CLI can recognise it without loading src/config.ts (and the cron parser it needs).
 */
export class ConfigError extends Error {
  constructor(variable: string, problem: string) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}
