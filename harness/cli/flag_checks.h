#pragma once
// What a flag's value may be, said once and attached to the flag with ->check(...), so a bad value
// is refused while the command line is parsed (exit 2, the flag and the value named), before any
// model is loaded, and means the same in every subcommand.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace lb {

// A decimal integer >= 1 (--tokens, --layers, --timeout, --repeats, ...). CLI11 alone would take
// "0x10", "010" (octal) and, for unsigned options, "-1" (wrapped to 2^64-1).
CLI::Validator positive_integer();
// A decimal integer >= 0 (--warmup, --num-questions where 0 means "all").
CLI::Validator non_negative_integer();
// A seed: a decimal integer in [0, 2^64-1]; neither wraps nor saturates.
CLI::Validator seed_value();
// A finite number > 0 (thresholds such as --max-rel-l2): "nan", "inf", 0 and negatives refused.
CLI::Validator positive_number();
// A finite number >= `least` (--max-slowdown >= 0, --max-rel-l2-growth >= 1).
CLI::Validator finite_at_least(double least);

// An input file: it exists and is a regular file (a directory is named as such).
CLI::Validator input_file();
// An output file: not a directory, its directory exists and can be written. Checked at parse time,
// so an unwritable --json is found before the compute, not after it.
CLI::Validator output_file();

// The parsed subcommand's output files (options checked with output_file()) must differ from each
// other and from its input files (input_file() options and positional record files): `report
// a.json -o a.json` would replace the record with HTML. Throws InputError naming both flags.
void check_outputs_differ_from_inputs(CLI::App& sub);

}  // namespace lb
