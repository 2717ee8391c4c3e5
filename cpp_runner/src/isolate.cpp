// Crash and hang isolation: one case in a forked child, results streamed back as JSON lines; what the child never
// reported (the set in flight when it died or hung, and the ones after it) becomes CRASH / TIMEOUT from the plan.
#include "results_json.h"
#include "run.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <numeric>

namespace torchconform {
namespace {

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Test hook (docs/robustness.md): TORCHCONFORM_FAULT_INJECT=<case>:<segv|abort|hang> makes the child process of
// that case die or hang before it runs anything, so that the isolation itself is tested end to end.
void maybe_inject_fault(const std::string& case_name) {
  const char* spec = std::getenv("TORCHCONFORM_FAULT_INJECT");
  if (!spec) return;
  const std::string s(spec);
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || s.substr(0, colon) != case_name) return;
  const std::string what = s.substr(colon + 1);
  if (what == "segv") std::raise(SIGSEGV);
  if (what == "abort") std::abort();
  if (what == "hang")
    for (;;) ::pause();
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended abnormally";
}

std::string seconds_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

std::vector<SetResult> run_case_isolated(const CaseSpec& c, const RunOptions& o, double timeout_s,
                                         const std::function<void(const SetResult&)>& on_result) {
  std::vector<SetResult> results;
  auto emit = [&](SetResult r) {
    if (on_result) on_result(r);
    results.push_back(std::move(r));
  };
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {  // child: run the case, stream one JSON line per result, leave without running destructors
    ::close(fds[0]);
    maybe_inject_fault(c.name);
    bool ok = true;
    try {
      run_case(c, o, {}, [&](const SetResult& r) { ok = ok && write_all(fds[1], result_to_json(r) + "\n"); });
    } catch (const std::exception& e) {
      write_all(fds[1], nlohmann::json({{"fatal", e.what()}}).dump() + "\n");
    }
    ::_exit(ok ? 0 : 3);
  }
  ::close(fds[1]);

  const auto t0 = Clock::now();
  std::string buffer, fatal;
  bool timed_out = false;
  for (;;) {
    const double left = timeout_s - since(t0);
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min(left * 1000, 6e4)) + 1);
    if (ready <= 0) continue;  // timeout slice or EINTR: the loop re-checks the deadline
    char chunk[65536];
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child is done (or dead)
    buffer.append(chunk, static_cast<size_t>(n));
    for (size_t nl; (nl = buffer.find('\n')) != std::string::npos; buffer.erase(0, nl + 1)) {
      const auto j = nlohmann::json::parse(buffer.substr(0, nl), nullptr, /*allow_exceptions=*/false);
      try {
        if (j.is_object() && j.contains("fatal")) fatal = j["fatal"].get<std::string>();
        else emit(j.get<SetResult>());
      } catch (const std::exception& e) {
        fatal = c.name + ": unreadable result from the case's process: " + e.what();
      }
    }
  }
  ::close(fds[0]);
  int status = 0;
  if (timed_out) ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  // Runs the child never reported: the one in flight when it died or hung, and those after it.
  std::string in_flight;
  for (const PlannedResult& p : plan(c)) {
    if (!result_selected(o, planned_id(c, p))) continue;  // --result left it out: the child was never to run it
    if (std::any_of(results.begin(), results.end(),
                    [&](const SetResult& r) { return r.set_name == p.set && r.artifact == p.label; }))
      continue;
    const std::string id = planned_id(c, p);
    Verdict v = Verdict::kCrash;
    std::string message;
    if (timed_out) {
      v = Verdict::kTimeout;
      message = c.name + ": no result within the case time limit of " + seconds_text(timeout_s) +
                " s; the case's process was killed";
    } else if (!fatal.empty()) {
      v = Verdict::kError;
      message = fatal;
    } else {
      message = c.name + ": the case's process " + describe_status(status);
    }
    if (in_flight.empty()) {
      in_flight = id;
      message += " while running " + id;
    } else {
      message += "; not run (the process ended in " + in_flight + ")";
    }
    SetResult r = error_result(c, p.set, o, v, message,
                               v == Verdict::kTimeout ? ErrorKind::kTimeout
                               : v == Verdict::kCrash ? ErrorKind::kCrash
                                                      : ErrorKind::kCorpus);
    r.artifact = p.label;
    r.runtime = p.runtime;
    if (in_flight == id)
      r.seconds = since(t0) - std::accumulate(results.begin(), results.end(), 0.0,
                                              [](double a, const SetResult& x) { return a + x.seconds; });
    if (v == Verdict::kError) apply_xfail(c, p.spec, p.variant, r);
    emit(std::move(r));
  }
  return results;
}

}  // namespace torchconform
