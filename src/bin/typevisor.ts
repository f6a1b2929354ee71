#!/usr/bin/env node
// The `typevisor` command: parses argv and runs a subcommand; the only place that exits the process.
import { main } from '../cli/main.js';

process.exitCode = await main(process.argv.slice(2));
