// Running a corpus, one idea a header: the plan (plan.h: which artifact runs which input set with which runtime),
// results (result.h: verdicts, comparisons, the line, the summary, the JSON mapping), running a case with LibTorch
// (run.h), and the verification run every face shares (verify.h). This umbrella includes them all; benchmark
// primitives: bench.h.
#pragma once

#include <torchconform/plan.h>
#include <torchconform/result.h>
#include <torchconform/run.h>
#include <torchconform/verify.h>
