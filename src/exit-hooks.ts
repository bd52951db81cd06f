/**
 * Last-moment cleanup for a process that ends without the chance to clean up properly: when it
 * calls process.exit (test runners do on Ctrl-C), or is ended by a signal nobody else handles.
 * Hooks are synchronous (nothing asynchronous runs after 'exit') and run once, in the order they
 * were added.
 *
 * A signal that another listener handles is left to it: that listener decides whether the
 * process ends (and if it calls process.exit, the hooks run then). A signal nobody else handles
 * runs the hooks and is raised again, so the process ends by it as it would have without us.
 */
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** Marks this module's signal listener, also in another copy of it loaded in the same process. */
const MARK = Symbol.for('pglease.exit-hooks');

const hooks = new Set<() => void>();
let installed = false;

function runHooks(): void {
  const pending = [...hooks];
  hooks.clear();
  for (const hook of pending) {
    try {
      hook();
    } catch {
      // the process is ending: one failed hook must not stop the others
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  const others = process.listeners(signal).filter((listener) => !(MARK in listener));
  if (others.length > 0) return;
  runHooks();
  uninstall();
  process.kill(process.pid, signal);
}

Object.defineProperty(onSignal, MARK, { value: true });

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runHooks);
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  process.off('exit', runHooks);
  for (const signal of SIGNALS) process.off(signal, onSignal);
}

/** Runs `hook` if the process ends before the returned function is called (which removes it). */
export function onProcessEnd(hook: () => void): () => void {
  hooks.add(hook);
  install();
  return () => {
    hooks.delete(hook);
    if (hooks.size === 0) uninstall();
  };
}
