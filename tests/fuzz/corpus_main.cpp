// corpus_main.cpp — runs a fuzzer's LLVMFuzzerTestOneInput over corpus files without libFuzzer:
// the regression-test form of the fuzzers in the normal build (ctest: fuzz_*_corpus).
//
//   engine_fuzz_corpus DIR_OR_FILE...
//
// Every regular file of each directory (sorted by name) is one input. Exits 1 if no input was
// found; an oracle violation aborts.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size);

namespace {

void run_file(const std::filesystem::path &path) {
  std::ifstream file(path, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(file)),
                                std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t *>(bytes.data()), bytes.size());
}

}  // namespace

int main(int argc, char **argv) {
  std::size_t inputs = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(arg)) {
      for (const auto &entry : std::filesystem::directory_iterator(arg))
        if (entry.is_regular_file()) files.push_back(entry.path());
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(arg);
    }
    for (const auto &f : files) {
      run_file(f);
      ++inputs;
    }
  }
  std::printf("%zu inputs passed\n", inputs);
  return inputs == 0 ? 1 : 0;
}
