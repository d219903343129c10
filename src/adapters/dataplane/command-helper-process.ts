/**
 * The helper process of CommandHelper: runs each command it is sent and sends back its exit code and
 * output. Small, so that each fork is cheap; it ends with its parent's channel.
 */
import { runCommand } from './command.js';
import type { CommandReply, CommandRequest } from './command-helper.js';

process.on('message', (request: CommandRequest) => {
  void runCommand(request.command, request.args, request.input).then((result) => process.send?.({ id: request.id, ...result } satisfies CommandReply));
});
process.on('disconnect', () => process.exit(0));
