// Which backend a model file needs, decided by its content: a .pt2 renamed .pt (or the other
// way round) still loads.
#include "model_backend.h"

namespace emaseg::detail {

std::unique_ptr<ModelBackend> load_model_file(const std::string& path, const Options& options) {
  if (is_aoti_package_file(path)) return load_aoti_file(path, options);
  return load_torchscript_file(path, options);  // also the one to explain a missing/bad file
}

std::unique_ptr<ModelBackend> load_model_buffer(const void* data, std::size_t size,
                                                const Options& options) {
  if (data != nullptr && size > 0 && is_aoti_package_buffer(data, size))
    return load_aoti_buffer(data, size, options);
  return load_torchscript_buffer(data, size, options);
}

}  // namespace emaseg::detail
