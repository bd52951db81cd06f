/**
 * A spinner on stderr for waits that last: it appears only after 300 ms, so quick answers print
 * nothing extra, and only on a terminal, so logs and pipes stay clean.
 */
import type { CliIo } from './io.js';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const DELAY_MS = 300;
const FRAME_MS = 80;

export async function withSpinner<T>(io: CliIo, label: string, work: () => Promise<T>): Promise<T> {
  const stream = io.stderr;
  // a terminal that cannot move the cursor (TERM=dumb) would show every frame
  if (stream.isTTY !== true || io.env.TERM === 'dumb') return work();
  let frame = 0;
  let shown = false;
  let ticker: NodeJS.Timeout | undefined;
  const clear = () => {
    clearTimeout(delay);
    if (ticker) clearInterval(ticker);
    if (shown) stream.write('\r\u001b[2K');
    shown = false;
  };
  // Ctrl-C while it spins: the line is cleared and a word said, then the process ends by the
  // signal as it would have (the request may already have been carried out)
  const interrupted = () => {
    clear();
    stream.write(`pglease: interrupted (${label.replace(/…$/, '').toLowerCase()}: the server may still carry it out)\n`);
    process.kill(process.pid, 'SIGINT');
  };
  const delay = setTimeout(() => {
    shown = true;
    const draw = () => stream.write(`\r${FRAMES[frame++ % FRAMES.length]} ${label}`);
    draw();
    ticker = setInterval(draw, FRAME_MS);
  }, DELAY_MS);
  process.once('SIGINT', interrupted);
  try {
    return await work();
  } finally {
    process.off('SIGINT', interrupted);
    clear();
  }
}
