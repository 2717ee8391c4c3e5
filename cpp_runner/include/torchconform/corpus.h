// Reading a torchconform corpus (docs/corpus-format.md): manifests, hash-checked files, pickled values.
#pragma once

#include <torchconform/compare.h>

#include <ATen/core/ivalue.h>

#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace torchconform {

// Text from a corpus made safe to print: valid UTF-8 is kept, control characters (terminal escapes, newlines),
// DEL and invalid bytes become \xNN, and code points that hide or reorder text (C1 controls, bidirectional
// overrides, zero-width characters, line separators) become \uNNNN, so a hostile file cannot forge output lines,
// report rows or JUnit XML.
std::string printable(const std::string& text);

// What an ERROR result is about, carried from where it is known to every report: faces classify results by this
// kind, never by matching words in the message.
enum class ErrorKind {
  kNone,            // not an error
  kCorpus,          // the corpus is unreadable, inconsistent or unsafe (hash, schema, archive, pickle, paths)
  kLoad,            // the runtime refused the artifact (torch::jit::load, the AOTInductor package loader)
  kMissingPackage,  // no AOTInductor package compiled for this program, LibTorch and device
  kNotRun,          // no runtime of this runner can run the artifact: nothing was verified for it
  kCall,            // the artifact loaded but calling it (or its prelude) raised
  kCrash,           // the case's process died
  kTimeout,         // the case's process was killed after the time limit
};
const char* to_string(ErrorKind kind);
ErrorKind error_kind_from(const std::string& name);  // inverse of to_string; throws std::invalid_argument
// Whether an expected-failure mark may cover a result that ended in this kind of error. A mark states how a model
// behaves on a PyTorch version: it never covers a corpus that is unreadable, unsigned or unsafe (not a behaviour of
// the model) nor a runtime this build lacks. The one home of the rule: the runner applies it, and the Python faces
// that judge another PyTorch's results (tools/compat.py) ask it through _core.
bool mark_may_cover(ErrorKind kind);

// A corpus that cannot be trusted or read: the message names the case, the file and the reason.
class CorpusError : public std::runtime_error {
 public:
  explicit CorpusError(const std::string& message, ErrorKind kind = ErrorKind::kCorpus)
      : std::runtime_error(printable(message)), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// How an artifact is stored (manifest `kind`) and what runs it (`runtimes`); parsed once, from the schema's enums.
enum class VariantKind { kTorchScript, kExportedProgram, kExecuTorchProgram };
enum class RuntimeKind { kTorchScript, kAoti, kNativeRT, kExecuTorch };
const char* to_string(VariantKind kind);  // "torchscript" | "exported_program" | "executorch_program"
const char* to_string(RuntimeKind kind);  // "torchscript" | "aoti" | "nativert" | "executorch"
std::optional<RuntimeKind> runtime_kind_from(const std::string& name);

// An expected-failure mark as the manifest states it (`{"reason", "torch"?, "device"?}`): with a `torch` condition
// it applies only where the LibTorch version matches, with a `device` condition only on that device type (a seeded
// sampling golden made on CPU cannot hold on CUDA, whose generator differs). Kept as written; which mark applies is
// decided per version and device at use (applicable_mark), so a face judging another PyTorch's results applies that
// PyTorch's version.
struct Mark {
  std::string reason;
  std::string torch;   // a version condition ("<2.14"), or "" for every version
  std::string device;  // a device type ("cpu", "cuda"), or "" for every device
  bool applies_to(const std::string& torch_version, const std::string& device_type) const;
};

struct FileRef {
  std::string file;    // relative to the case directory
  std::string sha256;  // lowercase hex
  std::optional<uint64_t> bytes;  // the size the manifest declares (older corpora: absent, then a cap applies)
};

struct PreludeCall {
  std::string method;  // dotted path through submodules: "decoder.set_temperature"
  std::vector<c10::IValue> args;
  std::string text;    // "decoder.set_temperature(0.25)"
};

struct InputSetSpec {
  std::string name;
  std::string description;
  std::string method = "forward";
  std::optional<int64_t> seed;  // torch::manual_seed(seed) before every checked call
  std::vector<PreludeCall> prelude;
  FileRef inputs;  // the call's arguments: positional ones, then the values of `keywords`, in that order
  FileRef expected;
  std::optional<Mark> xfail;  // expected to fail (strict: a pass fails the run)
  // The names of the last keywords.size() arguments of `inputs`, passed by keyword (manifest `keywords`).
  std::vector<std::string> keywords;
  // The eager model's submodule calls on this set, (path, call index, inputs, output) in completion order, for
  // localising a mismatch (manifest `submodules`; exported with record_submodules).
  std::optional<FileRef> submodules;
  // The noise envelope of the goldens (export --envelope): per output path ("$", "$[1]"), how far the golden moved
  // when only the kernel dispatch changed (other thread counts, lower ATEN_CPU_CAPABILITY levels), and what was tried.
  struct Bound {
    double max_abs = 0;
    double max_ulp = 0;
  };
  std::map<std::string, Bound> envelope;
  std::vector<std::string> envelope_sources;
};

// One dimension of an exported program's input as its guards allow it: a static size, a symbol with its range (one
// symbol on several dimensions: they are equal), or an expression of other symbols (recorded, not checked).
struct ProgramDim {
  std::optional<int64_t> size;  // static
  std::string symbol;           // dynamic
  int64_t min = 0;
  std::optional<int64_t> max;   // unbounded when absent
  std::string expr;             // derived
};

// One input leaf of an exported program, flattened: a tensor (passed to the program) or a constant the program was
// specialized on at capture (the input set must pass that very value).
struct ProgramInput {
  bool tensor = true;
  c10::IValue value;  // the constant, when !tensor
  std::string dtype;  // tensor: the dtype the program was captured with ("" when the manifest does not say)
  std::optional<std::vector<ProgramDim>> shape;  // tensor: the guards on its dimensions, when recorded
};

// A user container in an exported program's input/output spec (manifest `pytree_types`): by the name the program
// serializes it under, a namedtuple (rebuilt as a tuple), a registered dataclass (a dict of its fields) or a registered
// dict subclass whose context is its keys (a dict: transformers' ModelOutput).
struct PytreeType {
  // kNode: any other class registered with torch.utils._pytree.register_pytree_node (transformers' DynamicCache):
  // rebuilt as a str-keyed dict of its children, named from its context (node_child_names).
  enum class Kind { kNamedTuple, kDataclass, kMapping, kNode };
  std::string name;
  Kind kind = Kind::kNamedTuple;
  std::vector<std::string> fields, none_fields;
};

// Another artifact of the case's model (manifest key `variants`), checked on the same input sets against the same
// goldens and, call by call, against the case's TorchScript artifact.
struct VariantSpec {
  std::string name;
  VariantKind kind = VariantKind::kTorchScript;
  std::string description;
  std::string transform;          // the code that made it
  std::optional<FileRef> file;    // absent when the capture failed at export (see `error`)
  std::string error;              // the capture's error, recorded at export
  std::vector<std::string> input_sets;  // the sets it applies to, in the case's order
  // exported_program (aoti, nativert) and executorch_program (executorch): what runs it, its flattened inputs, whether
  // 0-dim integer tensors stand for Python ints, the user containers in its specs.
  std::vector<RuntimeKind> runtimes;
  std::vector<ProgramInput> inputs;
  bool int_outputs_as_tensors = false;
  std::vector<PytreeType> pytree_types;
  // executorch_program: the program's input and output treespecs (torch.utils._pytree JSON, as torch.export wrote
  // them; a .pte carries none), and the exported_program variant it was lowered from, whose file's own treespecs
  // they must equal (the runner takes the structure from that file, never from the manifest alone)
  std::string in_spec, out_spec;
  std::string lowered_from;
  // executorch_program: its ExecuTorch BundledProgram (export --bundled), when written
  std::optional<FileRef> bundled;
  TolerancePolicy tolerance;            // the case's unless the variant has its own
  std::optional<Mark> xfail;
  // What the export found when it reloaded the variant in Python (manifest `python_load_error`: torch.jit.load's
  // message), for a runner error that says Python fails the same way; never changes a verdict.
  std::string python_load_error;
  // exported_program: the AOTInductor options it is compiled with (manifest `aoti_options`: inductor config name ->
  // value), as canonical JSON ("{}" when none): part of its package's key (program_key).
  std::string aoti_options = "{}";
};

struct CaseSpec {
  std::string name;
  std::string mode;  // how the TorchScript artifact was made: trace | script | hybrid | script_function
  std::string description;
  std::filesystem::path dir;
  std::filesystem::path root;  // the corpus directory, canonical: no file of the case may resolve outside it
  FileRef artifact;          // the TorchScript artifact (when has_artifact)
  bool has_artifact = true;  // false for mode "export": the exported program variant is the artifact
  TolerancePolicy tolerance;
  std::string exported_torch;
  std::vector<InputSetSpec> sets;
  std::optional<Mark> xfail;  // every input set expected to fail
  // Operator namespaces outside LibTorch that the case's artifacts call (e.g. torchvision), and the libraries
  // that had been loaded when it was exported (file names: a hint for the error, never loaded from the corpus).
  std::vector<std::string> operator_namespaces, operator_libraries;
  std::vector<VariantSpec> variants;
  // Non-empty when the case's manifest could not be read or validated: the case reports this error and the
  // corpus's other cases still run.
  std::string error;
  // The manifest as read, hash-checked against corpus.json, schema-valid and at most 64 levels deep (empty when
  // `error` is set): what the Python faces read the export's records from, never the file again.
  std::string manifest_text;
};

struct Corpus {
  std::filesystem::path root;
  std::string index_sha256;  // of corpus.json, which nothing else vouches for: pin it out of band
  int format_version = 0;
  std::string exported_torch;
  std::string exported_python;
  int exported_threads = 0;
  std::string exported_cpu_capability;  // exported_with.cpu_capability ("" when not said)  // intra-op threads the goldens were computed with (exported_with.threads; 0: not said)
  std::vector<CaseSpec> cases;

  // Parses corpus.json (errors there throw CorpusError) and every case manifest, hash-checked against corpus.json;
  // a bad manifest marks its case (CaseSpec::error) instead of failing the whole corpus.
  static Corpus open(const std::filesystem::path& root);
  // Cases whose names match any glob (all when empty). An unmatched glob throws CorpusError.
  std::vector<const CaseSpec*> select(const std::vector<std::string>& globs) const;
};

// The expected-failure reason for one result, if any: the variant's mark comes first, then the input set's, then the
// case's; the first that applies to `torch_version` and `device_type` ("cpu", "cuda") wins. The one definition of
// xfail precedence (the runner calls it with its LibTorch version and the device it runs on, `torchconform compat`
// with the version of the PyTorch it judges).
std::optional<std::string> applicable_mark(const CaseSpec& c, const InputSetSpec* set, const VariantSpec* variant,
                                           const std::string& torch_version, const std::string& device_type);

// SHA-256 as lowercase hex (OpenSSL's libcrypto).
std::string sha256_hex(const void* data, size_t size);

// Whether `version` ("2.13.0", "2.14.1+cu130") satisfies `spec`: comma-separated clauses "<2.14", ">=2.13.0",
// "==1.13.1", "!=2.0" (numeric components; missing ones are 0). Used by xfail marks' "torch" conditions, which
// apply only where the runner's LibTorch matches. Throws CorpusError on a malformed spec.
bool version_matches(const std::string& version, const std::string& spec);

// docs/corpus-schema.json, compiled in.
const std::string& corpus_schema_text();

// Validates JSON text against a definition of the corpus schema ("manifest", "corpus", "policy"...). Returns ""
// when valid, else the first problem as "<json path>: <what>", e.g. "$.input_sets[0].seed: expected integer or null,
// got string". The Python exporter implements the same keywords with the same messages (torchconform/schema.py).
// JSON nested deeper than 64 levels is refused.
std::string validate_against_schema(const std::string& definition, const std::string& json_text);
// The same validator on any schema that uses only its keywords (tests run it on keyword cases beside a standard
// validator); a schema with another keyword throws.
std::string validate_with_schema(const std::string& schema_text, const std::string& json_text);

// Parses a tolerance object as it appears in a manifest ({"default": {...}, "outputs": {path: {...}}}) from JSON
// text. Throws CorpusError naming `who` and the bad key.
TolerancePolicy parse_tolerance_policy(const std::string& json_text, const std::string& who);

// Reads a file of a case, checks its SHA-256 against the manifest and returns its bytes. Throws CorpusError.
std::string read_verified(const CaseSpec& c, const FileRef& ref);
// The one checked door for every face: the bytes of the file `rel` (relative to the case directory) that the
// case's manifest declares (its artifact, a variant's file or bundle, an input set's inputs, expected or submodule
// records): a regular file inside the corpus, of its declared size and SHA-256, read once. A path the manifest does
// not declare is refused. Throws CorpusError.
std::string read_case_file(const CaseSpec& c, const std::string& rel);

// Unpickles a torch.save zip archive from memory, after checking the archive and its pickle (archive.h): nothing in
// it can run code, allocate more than its bytes describe, or be read past its end. Throws CorpusError naming `what`
// on a malformed or unsafe file.
c10::IValue load_value(const std::string& bytes, const std::string& what);

}  // namespace torchconform
