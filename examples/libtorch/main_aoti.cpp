// mpx_generate_aoti: the same program as mpx_generate, on an AOTInductor package
// (`mpx export --format aoti`): compiled kernels, no TorchScript interpreter, no Python.
//
//   mpx_generate_aoti MODEL.pt2 PRIMER.csv OUT.csv|OUT.mid [--notes N] [--seed S]
//                     [--temperature T[,T,T,T]] [--top-p P[,P,P,P]] [--density X] ... [--key K]
//                     [--show-controls] [--bench] [--force]
//
// Same protocol, flags and output as mpx_generate (mpx_common.cpp); only loading differs.
// The package holds the spec and its sampling defaults in its metadata, and says whether the
// graph's time axis is dynamic ("mpx_time_axis": "dynamic") or 1 (then the primer goes in one
// note per call).

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include "mpx_common.h"

namespace {

using Loader = torch::inductor::AOTIModelPackageLoader;

std::shared_ptr<Loader> open_package(const std::string& path) {
  if (!mpx::is_file(path)) throw mpx::Failure(path + ": no such model package");
  try {
    // run_single_threaded: one caller, so the runner's locking is not needed
    return std::make_shared<Loader>(path, "model", /*run_single_threaded=*/true);
  } catch (const c10::Error& e) {
    throw mpx::Failure(path + ": not a loadable AOTInductor package (" + mpx::first_line(e.what_without_backtrace()) + ")");
  } catch (const std::exception& e) {
    throw mpx::Failure(path + ": not a loadable AOTInductor package (" + mpx::first_line(e.what()) + ")");
  }
}

mpx::Model load_aoti(const std::string& path) {
  const std::shared_ptr<Loader> loader = open_package(path);
  const auto metadata = loader->get_metadata();
  const auto spec = metadata.find("mpx_spec");
  if (spec == metadata.end() || spec->second.empty())
    throw mpx::Failure(path + ": not an mpx package (no mpx_spec metadata); write it with mpx export --format aoti");
  mpx::check_spec(spec->second, path);  // an older contract is named here
  mpx::Model model;
  model.kind = "AOTInductor";
  model.spec = spec->second;
  const auto time = metadata.find("mpx_time_axis");
  model.whole_primer = time == metadata.end() || time->second != "1";
  model.forward = [loader](const std::vector<at::Tensor>& inputs) { return loader->run(inputs); };
  const auto state = mpx::zero_state_from_spec(model.spec, path);  // no zero_state in a package
  model.zero_state = [state]() { return std::make_pair(state.first.clone(), state.second.clone()); };
  return model;
}

}  // namespace

int main(int argc, char** argv) { return mpx::run(argc, argv, "mpx_generate_aoti", "MODEL.pt2", load_aoti); }
