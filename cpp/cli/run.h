// Running one source (run.cpp) or several (run_streams.cpp): choose the model, open the input, then the outputs, run the pipeline and
// report. Returns the exit code of a run that got that far; errors are thrown (emaseg::Error).
#pragma once

#include "options.h"

namespace emaseg::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitRuntime = 1,  // the model failed while running, or another unexpected error
  kExitUsage = 2,    // unknown or malformed option, missing input
  kExitModel = 3,    // model file missing, corrupt, no ema-seg metadata, .pt2 for another CPU/torch
  kExitInput = 4,    // video, camera, stream or images cannot be opened
  kExitOutput = 5,   // output video, image folder or mask folder cannot be written
  kExitDevice = 6,   // requested device unavailable (e.g. --device cuda without CUDA)
  kExitSomeFailed = 7,     // --image/--images: some images failed (each named on stderr), the rest done
  kExitStreamsFailed = 8,  // several streams: some failed (each named on stderr), the others ran
  kExitInterrupted = 130,  // SIGINT/SIGTERM: outputs were finished and closed first
};

int run(const CliOptions& options);
// Several streams in one process (CliOptions::streams()), run_streams.cpp.
int run_streams(const CliOptions& options);

}  // namespace emaseg::cli
