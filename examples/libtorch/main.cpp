// mpx_generate: continue a primer with an mpx contract-v3 TorchScript export
// (music_producter.pt), in C++, note for note as mpx does.
//
//   mpx_generate MODEL.pt PRIMER.csv OUT.csv|OUT.mid [--notes N] [--seed S]
//                [--temperature T[,T,T,T]] [--top-p P[,P,P,P]] [--density X] ... [--key K]
//                [--show-controls] [--bench] [--force]
//
// The model samples each next note itself from the uniforms it is given; this program runs the
// protocol around it (mpx_common.cpp). Only loading is TorchScript-specific.

#include <torch/script.h>

#include "mpx_common.h"

namespace {

const char* kSpecFile = "mpx_spec.json";  // the spec's place inside an mpx TorchScript archive
const size_t kContractInputs = 8;         // notes, h0, c0, uniforms, temperature, top_p, controls, given

torch::jit::Module open_archive(const std::string& path, std::string& spec) {
  if (!mpx::is_file(path)) throw mpx::Failure(path + ": no such model file");
  torch::jit::ExtraFilesMap extra{{kSpecFile, ""}};
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU, extra);
  } catch (const c10::Error& e) {
    throw mpx::Failure(path + ": not a loadable TorchScript archive (" + mpx::first_line(e.what_without_backtrace()) + ")");
  }
  spec = extra[kSpecFile];
  if (spec.empty()) throw mpx::Failure(path + ": not an mpx export (no " + kSpecFile + " inside); export it with `mpx export`");
  mpx::check_spec(spec, path);  // an older contract is named here
  // self + the contract's inputs: a forward of another shape is refused here, not mid-run
  const size_t inputs = module.get_method("forward").function().getSchema().arguments().size() - 1;
  if (inputs != kContractInputs)
    throw mpx::Failure(path + ": forward takes " + std::to_string(inputs) +
                       " inputs, contract v3 takes 8 (notes, h0, c0, uniforms, temperature, top_p, controls, given): "
                       "export it with mpx");
  module.eval();
  return module;
}

mpx::Model load_torchscript(const std::string& path) {
  mpx::Model model;
  model.kind = "TorchScript";
  // shared: the Model's functions outlive this scope and a Module is cheap to share
  auto module = std::make_shared<torch::jit::Module>(open_archive(path, model.spec));
  model.forward = [module](const std::vector<at::Tensor>& inputs) {
    std::vector<c10::IValue> args(inputs.begin(), inputs.end());
    const auto outputs = module->forward(args).toTuple()->elements();  // one tuple of 4
    std::vector<at::Tensor> tensors;
    for (const auto& v : outputs) tensors.push_back(v.toTensor());
    return tensors;
  };
  if (module->find_method("zero_state")) {
    model.zero_state = [module]() {
      const auto state = module->run_method("zero_state", 1).toTuple()->elements();
      return std::make_pair(state[0].toTensor(), state[1].toTensor());
    };
  } else {  // the contract's spec names the state size
    const auto state = mpx::zero_state_from_spec(model.spec, path);
    model.zero_state = [state]() { return std::make_pair(state.first.clone(), state.second.clone()); };
  }
  return model;
}

}  // namespace

int main(int argc, char** argv) { return mpx::run(argc, argv, "mpx_generate", "MODEL.pt", load_torchscript); }
