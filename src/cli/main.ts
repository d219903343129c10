#!/usr/bin/env node
import { processStdin } from './context.js';
import { runCalicoctl } from './program.js';

process.exitCode = await runCalicoctl(process.argv.slice(2), {
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  stdin: processStdin,
});
