// emaseg._runtime: the C++ runtime (emaseg.h, pipeline.h) for Python and numpy.
// python/emaseg/runtime.py re-exports it; python/emaseg/runtime.pyi documents it.
//
// Frames cross into C++ without a copy where that is safe: a uint8 H x W x 3 array whose rows
// are packed BGR pixels (C-contiguous, or a crop of such an array) becomes a cv::Mat over the
// array's memory; any other layout is copied once. Results go the other way whole: each array
// owns the cv::Mat it shows through a capsule. The GIL is released while the model runs.
#include <emaseg/emaseg.h>
#include <emaseg/multi_pipeline.h>
#include <emaseg/outputs.h>
#include <emaseg/pipeline.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

namespace fs = std::filesystem;
using emaseg::Error;

// ---------------------------------------------------------------------------------------------
// Errors: emaseg::Error becomes emaseg.runtime.Error (a RuntimeError) with the same message and
// its kind as a string, so scripts can tell a missing model from a bad frame.

PYBIND11_CONSTINIT py::gil_safe_call_once_and_store<py::object> error_type;

const char* kind_name(Error::Kind kind) {
  switch (kind) {
    case Error::Kind::kModel: return "model";
    case Error::Kind::kDevice: return "device";
    case Error::Kind::kArgument: return "argument";
    case Error::Kind::kInput: return "input";
    case Error::Kind::kOutput: return "output";
    case Error::Kind::kRuntime: return "runtime";
  }
  return "runtime";
}

void translate_error(std::exception_ptr error) {
  try {
    if (error) std::rethrow_exception(error);
  } catch (const Error& e) {
    const py::object& type = error_type.get_stored();
    py::object instance = type(e.what());
    instance.attr("kind") = kind_name(e.kind());
    PyErr_SetObject(type.ptr(), instance.ptr());
  }
}

// ---------------------------------------------------------------------------------------------
// numpy -> cv::Mat

std::string shape_text(const py::array& a) {
  std::string text = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    text += (i ? ", " : "") + std::to_string(a.shape(i));
  return text + (a.ndim() == 1 ? ",)" : ")");
}

std::string dtype_text(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

py::array require_array(const py::handle& obj, const std::string& what) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(what + " must be a numpy array, got " +
                         py::str(py::type::handle_of(obj).attr("__qualname__")).cast<std::string>());
  return py::reinterpret_borrow<py::array>(obj);
}

int checked_int(py::ssize_t value, const std::string& what) {
  if (value > INT_MAX) throw py::value_error(what + " is too large for OpenCV");
  return static_cast<int>(value);
}

// An array argument seen as a cv::Mat; `array` owns the memory `mat` points into.
struct MatView {
  py::array array;
  cv::Mat mat;
};

// `a` (2-D, or 3-D with `channels` last) as a Mat of `type` without a copy when its rows hold
// packed elements, else as a Mat over a C-contiguous copy. Empty arrays give an empty Mat, which
// the runtime reports in its own words.
MatView view_rows(py::array a, int type) {
  const py::ssize_t h = a.shape(0), w = a.shape(1);
  if (h == 0 || w == 0) return {a, cv::Mat()};
  const auto item = static_cast<py::ssize_t>(CV_ELEM_SIZE1(type));
  const auto pixel = static_cast<py::ssize_t>(CV_ELEM_SIZE(type));
  const py::ssize_t row = w * pixel;
  bool packed = a.strides(1) == pixel && (h == 1 || (a.strides(0) >= row && a.strides(0) % item == 0));
  if (a.ndim() == 3) packed = packed && a.strides(2) == item;
  if (!packed) a = py::array::ensure(a, py::array::c_style);
  const auto step = static_cast<std::size_t>(h == 1 ? row : a.strides(0));
  // The runtime only reads its inputs, so read-only arrays are fine.
  cv::Mat mat(checked_int(h, "frame height"), checked_int(w, "frame width"), type,
              const_cast<void*>(a.data()), step);
  return {a, mat};
}

// A BGR frame: uint8, H x W x 3. Other dtypes and shapes are refused with a hint rather than
// converted, since a guess (RGB or BGR? 0..1 or 0..255?) would give wrong labels silently.
MatView frame_view(const py::handle& obj) {
  const py::array a = require_array(obj, "frame");
  if (!py::isinstance<py::array_t<std::uint8_t>>(a))
    throw py::type_error("frame must be a uint8 array (BGR, 0..255), got dtype " + dtype_text(a) +
                         "; convert with frame.astype(np.uint8) (scale 0..1 floats by 255 first)");
  if (a.ndim() != 3 || a.shape(2) != 3) {
    std::string hint;
    if (a.ndim() == 2 || (a.ndim() == 3 && a.shape(2) == 1))
      hint = "; convert grayscale with cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)";
    else if (a.ndim() == 3 && a.shape(2) == 4)
      hint = "; drop the alpha channel with cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)";
    else if (a.ndim() == 4)
      hint = "; pass a batch of frames to segment_batch";
    throw py::value_error("frame must be an H x W x 3 (BGR) array, got shape " + shape_text(a) +
                          hint);
  }
  return view_rows(a, CV_8UC3);
}

// A label map: 2-D integers. uint8, uint16 and int32 are used as they are; other integer types
// (int64 from argmax, ...) are converted to int32, with ids beyond its range clipped to -1,
// which colours black like any id outside the palette.
MatView labels_view(const py::handle& obj) {
  py::array a = require_array(obj, "labels");
  const char kind = a.dtype().kind();
  if (kind != 'u' && kind != 'i')
    throw py::type_error("labels must be an integer array of class ids, got dtype " +
                         dtype_text(a));
  if (a.ndim() != 2)
    throw py::value_error("labels must be an H x W array, got shape " + shape_text(a));
  if (py::isinstance<py::array_t<std::uint8_t>>(a)) return view_rows(a, CV_8U);
  if (py::isinstance<py::array_t<std::uint16_t>>(a)) return view_rows(a, CV_16U);
  if (!py::isinstance<py::array_t<std::int32_t>>(a)) {
    const py::module_ np = py::module_::import("numpy");
    const py::object wide = a.attr("astype")(np.attr("int64"));
    a = np.attr("clip")(wide, -1, INT32_MAX).attr("astype")(np.attr("int32"));
  }
  return view_rows(a, CV_32S);
}

// ---------------------------------------------------------------------------------------------
// cv::Mat -> numpy

py::dtype dtype_of(int depth) {
  switch (depth) {
    case CV_8U: return py::dtype::of<std::uint8_t>();
    case CV_16U: return py::dtype::of<std::uint16_t>();
    case CV_32S: return py::dtype::of<std::int32_t>();
    case CV_32F: return py::dtype::of<float>();
    default: throw std::runtime_error("emaseg: unexpected result type from the runtime");
  }
}

// An array that owns `mat`: H x W for one channel, else H x W x C. A Mat that does not own its
// memory (u == nullptr) is copied first, as its buffer may go away under the array.
py::array to_numpy(cv::Mat mat) {
  if (mat.u == nullptr) mat = mat.clone();
  const py::dtype dtype = dtype_of(mat.depth());
  const auto item = static_cast<py::ssize_t>(mat.elemSize1());
  std::vector<py::ssize_t> shape{mat.rows, mat.cols};
  std::vector<py::ssize_t> strides{static_cast<py::ssize_t>(mat.step[0]),
                                   static_cast<py::ssize_t>(mat.elemSize())};
  if (mat.channels() > 1) {
    shape.push_back(mat.channels());
    strides.push_back(item);
  }
  auto owner = std::make_unique<cv::Mat>(std::move(mat));
  void* data = owner->data;
  py::capsule base(owner.get(), [](void* p) { delete static_cast<cv::Mat*>(p); });
  owner.release();  // the capsule deletes it now
  return py::array(dtype, shape, strides, data, base);
}

// C x H x W float32 from the runtime's probability planes: one array over their common buffer
// when they are consecutive slices of it (what the runtime returns), else a copy.
py::array planes_to_numpy(const std::vector<cv::Mat>& planes, int rows, int cols) {
  const auto classes = static_cast<py::ssize_t>(planes.size());
  const std::size_t plane_bytes = std::size_t(rows) * std::size_t(cols) * sizeof(float);
  bool one_block = classes > 0 && planes[0].u != nullptr;
  for (py::ssize_t c = 0; one_block && c < classes; ++c) {
    const cv::Mat& p = planes[c];
    one_block = p.type() == CV_32F && p.rows == rows && p.cols == cols && p.isContinuous() &&
                p.u == planes[0].u && p.data == planes[0].data + c * plane_bytes;
  }
  if (one_block) {
    // planes[0] holds a reference to the whole allocation, every plane included.
    auto owner = std::make_unique<cv::Mat>(planes[0]);
    void* data = owner->data;
    py::capsule base(owner.get(), [](void* p) { delete static_cast<cv::Mat*>(p); });
    owner.release();
    const auto row_bytes = static_cast<py::ssize_t>(cols * sizeof(float));
    return py::array(py::dtype::of<float>(), {classes, py::ssize_t(rows), py::ssize_t(cols)},
                     {static_cast<py::ssize_t>(plane_bytes), row_bytes, py::ssize_t(sizeof(float))},
                     data, base);
  }
  py::array_t<float> out({classes, py::ssize_t(rows), py::ssize_t(cols)});
  for (py::ssize_t c = 0; c < classes; ++c) {
    cv::Mat target(rows, cols, CV_32F, out.mutable_data(c));
    planes[c].convertTo(target, CV_32F);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Segmenter

emaseg::Options make_options(const std::string& device, std::optional<int> threads, bool half,
                             bool optimize, long long max_pixels) {
  emaseg::Options options;
  options.max_pixels = max_pixels;
  options.device = device;
  options.threads = threads.value_or(0);
  options.half = half;
  options.optimize = optimize;
  return options;
}

// A buffer's bytes for as long as this lives: PyBUF_SIMPLE asks for one contiguous block, and the
// export keeps e.g. a bytearray from being resized while the GIL is released.
class BytesView {
 public:
  explicit BytesView(const py::handle& obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  }
  BytesView(const BytesView&) = delete;
  BytesView& operator=(const BytesView&) = delete;
  ~BytesView() { PyBuffer_Release(&view_); }
  const void* data() const { return view_.buf; }
  std::size_t size() const { return static_cast<std::size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

std::vector<MatView> batch_views(const py::object& frames) {
  if (py::isinstance<py::array>(frames)) {
    const auto a = py::reinterpret_borrow<py::array>(frames);
    if (a.ndim() != 4)
      throw py::value_error("segment_batch takes a list of frames or an N x H x W x 3 array, got "
                            "an array of shape " + shape_text(a));
  } else if (py::isinstance<py::str>(frames) || py::isinstance<py::bytes>(frames) ||
             !py::isinstance<py::iterable>(frames)) {
    throw py::type_error("segment_batch takes a list of frames or an N x H x W x 3 array, got " +
                         py::str(py::type::handle_of(frames).attr("__qualname__")).cast<std::string>());
  }
  std::vector<MatView> views;
  for (const py::handle item : frames) views.push_back(frame_view(item));
  return views;
}

// A str or os.PathLike argument as a path; anything else is a TypeError, as os.fspath says.
std::string path_text(const py::object& obj) {
  return py::module_::import("os").attr("fspath")(obj).cast<fs::path>().string();
}

std::string segmenter_repr(const emaseg::Segmenter& s) {
  const emaseg::Metadata& m = s.metadata();
  return "<emaseg.runtime.Segmenter " + m.config_name + " (" + std::to_string(m.num_classes) +
         " classes) on " + s.device() + ">";
}

// ---------------------------------------------------------------------------------------------
// process_video

py::dict latency_dict(const emaseg::LatencySummary& s) {
  return py::dict("count"_a = s.count, "mean"_a = s.mean, "p50"_a = s.p50, "p95"_a = s.p95,
                  "max"_a = s.max);
}

py::dict process_video(const py::object& input, const std::optional<fs::path>& output,
                       const py::object& model, const std::string& device,
                       std::optional<int> threads, bool half, bool optimize,
                       long long max_pixels, double alpha,
                       int every,
                       std::optional<long long> max_frames, const std::optional<fs::path>& mask_dir,
                       const std::string& fourcc, const py::object& progress) {
  if (!(alpha >= 0.0 && alpha <= 1.0))
    throw Error(Error::Kind::kArgument, "alpha must lie in [0, 1], got " + std::to_string(alpha));
  if (max_frames && *max_frames < 1)
    throw Error(Error::Kind::kArgument, "max_frames must be >= 1 (or None for all frames)");
  if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
    throw py::type_error("progress must be a callable progress(done, total) or None");
  const bool camera = py::isinstance<py::int_>(input) && !py::isinstance<py::bool_>(input);
  const std::string source_name =
      camera ? "camera " + std::to_string(input.cast<int>()) : path_text(input);
  const int camera_index = camera ? input.cast<int>() : -1;

  // A Segmenter passed in is used as it is; a path is loaded here with device, threads, half,
  // optimize.
  std::unique_ptr<emaseg::Segmenter> owned;
  const emaseg::Segmenter* segmenter = nullptr;
  if (py::isinstance<emaseg::Segmenter>(model)) {
    segmenter = &model.cast<const emaseg::Segmenter&>();
  } else if (model.is_none()) {
    throw py::type_error("process_video needs model=, a Segmenter or the path of an exported model");
  } else {
    const std::string path = path_text(model);
    const emaseg::Options options = make_options(device, threads, half, optimize, max_pixels);
    py::gil_scoped_release release;
    owned = std::make_unique<emaseg::Segmenter>(path, options);
    segmenter = owned.get();
  }
  emaseg::OutputOptions out;
  out.video = output ? output->string() : std::string();
  out.mask_dir = mask_dir ? mask_dir->string() : std::string();
  out.alpha = alpha;
  out.fourcc = fourcc;

  long long frame_count = -1;  // frames the run will see, if known
  emaseg::PipelineStats stats;
  std::string written;  // the finished video ("" for none)
  {
    py::gil_scoped_release release;
    // The input opens before any output exists, so a bad input leaves nothing behind.
    const std::unique_ptr<emaseg::FrameSource> source =
        camera ? emaseg::open_camera(camera_index) : emaseg::open_video(source_name);
    frame_count = source->frame_count();
    if (max_frames && (frame_count < 0 || *max_frames < frame_count)) frame_count = *max_frames;
    emaseg::RunOutputs outputs(*segmenter, *source, out);  // refuses to overwrite the input

    emaseg::PipelineOptions options;
    options.every = every;
    options.max_frames = max_frames.value_or(-1);
    long long done = 0;
    // Runs on this thread: Python is called back here, with the GIL taken for the call only.
    const auto sink = [&](const emaseg::FrameResult& r) {
      outputs.write(r);
      ++done;
      py::gil_scoped_acquire acquire;
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // Ctrl-C stops the run
      if (progress.is_none()) return true;
      const py::object go_on =
          progress(done, frame_count >= 0 ? py::object(py::int_(frame_count)) : py::none());
      return go_on.ptr() != Py_False;
    };
    try {
      stats = emaseg::run_pipeline(*segmenter, *source, sink, options);
    } catch (py::error_already_set& e) {
      // Ctrl-C (or a KeyboardInterrupt from `progress`) keeps what was done as
      // <stem>.partial.mp4, as the CLI does; any other failure leaves no finished-looking
      // video: the temporary file goes with `outputs`.
      bool interrupted = false;
      {
        py::gil_scoped_acquire acquire;
        interrupted = e.matches(PyExc_KeyboardInterrupt);
      }
      if (interrupted) {
        try {
          outputs.finish_partial();
        } catch (const Error&) {  // nothing playable to keep; the interrupt is what matters
        }
      }
      throw;
    }
    outputs.finish();  // complete and checked before the summary says it is there
    if (!out.video.empty() && stats.delivered > 0) written = out.video;
  }

  const auto none_or = [](const std::string& text) {
    return text.empty() ? py::object(py::none()) : py::object(py::str(text));
  };
  const py::object total = frame_count >= 0 ? py::object(py::int_(frame_count)) : py::none();
  return py::dict(
      "input"_a = source_name, "output"_a = none_or(written), "mask_dir"_a = none_or(out.mask_dir),
      "device"_a = segmenter->device(), "total"_a = total, "frames"_a = stats.delivered,
      "read"_a = stats.read, "inferred"_a = stats.inferred, "reused"_a = stats.reused,
      "dropped"_a = stats.dropped, "unreadable"_a = stats.unreadable, "seconds"_a = stats.seconds,
      "fps"_a = stats.seconds > 0 ? double(stats.delivered) / stats.seconds : 0.0,
      "stopped"_a = stats.stopped, "class_pixels"_a = stats.class_pixels,
      "model_ms"_a = latency_dict(stats.model_ms), "end_to_end_ms"_a = latency_dict(stats.latency_ms));
}

// ---------------------------------------------------------------------------------------------
// process_streams

py::dict stream_dict(const emaseg::StreamSpec& spec, const emaseg::StreamStats& s) {
  return py::dict("name"_a = s.name, "input"_a = spec.input, "state"_a = emaseg::to_string(s.state),
                  "live"_a = s.live, "frames"_a = s.frames, "dropped"_a = s.dropped,
                  "unreadable"_a = s.unreadable, "reconnects"_a = s.reconnects, "fps"_a = s.fps,
                  "latency_ms"_a = latency_dict(s.latency_ms),
                  "error"_a = s.error.empty() ? py::object(py::none()) : py::object(py::str(s.error)));
}

py::list process_streams(const py::object& sources, const py::object& on_frame, const py::object& model,
                         const std::string& device, std::optional<int> threads, std::optional<int> workers,
                         std::optional<long long> max_frames, int every, double stall_timeout) {
  if (!on_frame.is_none() && !PyCallable_Check(on_frame.ptr()))
    throw py::type_error("on_frame must be a callable on_frame(name, index, frame, labels) or None");
  if (max_frames && *max_frames < 1) throw Error(Error::Kind::kArgument, "max_frames must be >= 1 (or None for all frames)");
  if (!(stall_timeout >= 0)) throw Error(Error::Kind::kArgument, "stall_timeout must be >= 0 seconds (0: wait forever)");
  // {name: input} keeps the names; a list of inputs is named after their stems.
  std::vector<emaseg::StreamSpec> specs;
  if (py::isinstance<py::dict>(sources)) {
    std::vector<emaseg::StreamSpec> named;
    for (const auto& [name, input] : sources.cast<py::dict>()) named.push_back({py::str(name).cast<std::string>(), path_text(py::reinterpret_borrow<py::object>(input))});
    specs = std::move(named);
  } else if (!py::isinstance<py::str>(sources) && py::isinstance<py::iterable>(sources)) {
    std::vector<std::string> inputs;
    for (const py::handle item : sources) inputs.push_back(path_text(py::reinterpret_borrow<py::object>(item)));
    specs = emaseg::name_streams(inputs);
  } else {
    throw py::type_error("sources must be a list of paths or URLs, or a dict {name: path or URL}");
  }

  // A Segmenter passed in is the one model worker; a path is loaded `workers` times, each with
  // threads / workers threads (the CLI's rule: on the CPU, one per stream up to 2 per thread).
  std::vector<std::unique_ptr<emaseg::Segmenter>> owned;
  std::vector<const emaseg::Segmenter*> models;
  if (py::isinstance<emaseg::Segmenter>(model)) {
    if (workers && *workers != 1)
      throw Error(Error::Kind::kArgument, "workers applies to a model path: a Segmenter is one worker");
    models.push_back(&model.cast<const emaseg::Segmenter&>());
  } else if (model.is_none()) {
    throw py::type_error("process_streams needs model=, a Segmenter or the path of an exported model");
  } else {
    if (workers && *workers < 1) throw Error(Error::Kind::kArgument, "workers must be >= 1");
    const std::string path = path_text(model);
    const int cores = threads.value_or(int(std::max(1U, std::thread::hardware_concurrency())));
    const bool cuda = device.rfind("cuda", 0) == 0;
    const int count = workers ? *workers : cuda ? 1 : int(std::min<std::size_t>(specs.size(), std::size_t(2 * cores)));
    const emaseg::Options options =
        make_options(device, cuda ? threads : std::optional<int>(std::max(1, cores / count)), false, false,
                     emaseg::Options().max_pixels);
    py::gil_scoped_release release;
    for (int w = 0; w < count; ++w) {
      owned.push_back(std::make_unique<emaseg::Segmenter>(path, options));
      models.push_back(owned.back().get());
    }
  }

  std::atomic<bool> stop{false};
  emaseg::MultiPipelineOptions options;
  options.max_frames = max_frames.value_or(-1);
  options.every = every;
  options.video.stall_timeout = stall_timeout;
  options.video.threads = 1;
  options.stop = &stop;
  emaseg::MultiPipeline pipeline(models, specs, options);

  // The first exception of a callback (or Ctrl-C) stops every stream and is raised at the end.
  std::mutex error_mutex;
  std::exception_ptr callback_error;
  emaseg::StreamEvents events;
  if (!on_frame.is_none()) {
    events.on_frame = [&](std::size_t i, const emaseg::FrameResult& r) {
      py::gil_scoped_acquire acquire;
      try {
        on_frame(specs[i].name, r.index, to_numpy(r.frame.clone()), to_numpy(r.labels.clone()));
      } catch (py::error_already_set&) {
        {
          const std::lock_guard<std::mutex> lock(error_mutex);
          if (!callback_error) callback_error = std::current_exception();
        }
        stop = true;
        throw std::runtime_error("on_frame raised an exception");
      }
    };
  }
  // The streams run on a thread of their own; this one waits with the GIL taken now and then, so
  // that Ctrl-C reaches Python (signals are handled on the main thread only).
  std::exception_ptr run_error;
  std::atomic<bool> finished{false};
  std::thread runner([&] {
    try {
      pipeline.run(events);
    } catch (...) {
      run_error = std::current_exception();
    }
    finished = true;
  });
  bool interrupted = false;
  while (!finished) {
    {
      py::gil_scoped_release release;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!interrupted && PyErr_CheckSignals() != 0) {
      PyErr_Clear();  // raised again below, once every stream has ended
      interrupted = true;
      stop = true;
    }
  }
  {
    py::gil_scoped_release release;
    runner.join();
  }
  if (callback_error) std::rethrow_exception(callback_error);
  if (run_error) std::rethrow_exception(run_error);
  if (interrupted) {
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
  py::list out;
  const std::vector<emaseg::StreamStats> stats = pipeline.stats();
  for (std::size_t i = 0; i < stats.size(); ++i) out.append(stream_dict(specs[i], stats[i]));
  return out;
}

}  // namespace

PYBIND11_MODULE(_runtime, m) {
  m.doc() = "ema-seg's C++ runtime for numpy frames; import it as emaseg.runtime.";

  error_type.call_once_and_store_result([]() {
    py::dict attributes("__doc__"_a = "A failure of the runtime. str(e) is the C++ message; "
                                      "e.kind is one of model, device, argument, input, output, "
                                      "runtime.",
                        "kind"_a = "runtime");
    return py::reinterpret_steal<py::object>(
        PyErr_NewException("emaseg.runtime.Error", PyExc_RuntimeError, attributes.ptr()));
  });
  if (!error_type.get_stored()) throw py::error_already_set();
  m.attr("Error") = error_type.get_stored();
  py::register_exception_translator(translate_error);

  py::class_<emaseg::Metadata>(m, "Metadata",
                               "The model's metadata.json, parsed (docs/model_file_format.md).")
      .def_readonly("format", &emaseg::Metadata::format)
      .def_readonly("format_version", &emaseg::Metadata::format_version)
      .def_readonly("config_name", &emaseg::Metadata::config_name)
      .def_readonly("num_classes", &emaseg::Metadata::num_classes)
      .def_readonly("class_names", &emaseg::Metadata::class_names)
      .def_readonly("palette", &emaseg::Metadata::palette, "[R, G, B] per class")
      .def_readonly("mean", &emaseg::Metadata::mean)
      .def_readonly("std", &emaseg::Metadata::stddev)
      .def_readonly("mode", &emaseg::Metadata::mode)
      .def_readonly("resize_type", &emaseg::Metadata::resize_type)
      .def_readonly("resize", &emaseg::Metadata::resize)
      .def_readonly("slide_crop", &emaseg::Metadata::slide_crop)
      .def_readonly("slide_stride", &emaseg::Metadata::slide_stride)
      .def_readonly("flip", &emaseg::Metadata::flip)
      .def_readonly("align_corners", &emaseg::Metadata::align_corners)
      .def_readonly("dtype", &emaseg::Metadata::dtype)
      .def_readonly("label_dtype", &emaseg::Metadata::label_dtype)
      .def_readonly("checkpoint_sha256", &emaseg::Metadata::checkpoint_sha256)
      .def_readonly("torch_version", &emaseg::Metadata::torch_version)
      .def_readonly("emaseg_version", &emaseg::Metadata::emaseg_version)
      .def_property_readonly(
          "network_sizes",
          [](const emaseg::Metadata& meta) {
            std::vector<std::pair<int, int>> sizes;
            for (const cv::Size& size : meta.network_sizes) sizes.emplace_back(size.width, size.height);
            return sizes;
          },
          "(width, height) of each network input size a .pt2 holds a compiled network for")
      .def_readonly("any_size", &emaseg::Metadata::any_size,
                    "whether frames of other network sizes run (on the any-size model)")
      .def(
          "network_size",
          [](const emaseg::Metadata& meta, int width, int height) {
            const cv::Size size = meta.network_size(cv::Size(width, height));
            return std::make_pair(size.width, size.height);
          },
          py::arg("width"), py::arg("height"), "(width, height) of the network input for frames of this size")
      .def(
          "compiled_for",
          [](const emaseg::Metadata& meta, int width, int height) {
            return meta.compiled_for(cv::Size(width, height));
          },
          py::arg("width"), py::arg("height"), "whether frames of this size run on code compiled for their network size")
      .def_readonly("json", &emaseg::Metadata::json, "the raw metadata.json")
      .def("to_dict", [](const emaseg::Metadata& meta) {
        return py::module_::import("json").attr("loads")(meta.json);
      }, "metadata.json as a dict (every key, including those not parsed into attributes)")
      .def("__repr__", [](const emaseg::Metadata& meta) {
        return "<emaseg.runtime.Metadata " + meta.config_name + ", " +
               std::to_string(meta.num_classes) + " classes, mode " + meta.mode + ", " +
               meta.dtype + ">";
      });

  py::class_<emaseg::Segmenter>(m, "Segmenter",
                                "An exported ema-seg model on a device; see runtime.pyi.")
      .def(py::init([](const fs::path& model_path, const std::string& device,
                       std::optional<int> threads, bool half, bool optimize, long long max_pixels) {
             const std::string path = model_path.string();
             const emaseg::Options options = make_options(device, threads, half, optimize, max_pixels);
             py::gil_scoped_release release;
             return std::make_unique<emaseg::Segmenter>(path, options);
           }),
           "model_path"_a, "device"_a = "cpu", "threads"_a = py::none(), "half"_a = false,
           "optimize"_a = false, "max_pixels"_a = emaseg::Options().max_pixels)
      .def_static("from_bytes", [](const py::object& data, const std::string& device,
                                   std::optional<int> threads, bool half, bool optimize,
                                   long long max_pixels) {
             const BytesView bytes(data);
             const emaseg::Options options = make_options(device, threads, half, optimize, max_pixels);
             py::gil_scoped_release release;
             return std::make_unique<emaseg::Segmenter>(bytes.data(), bytes.size(), options);
           },
           "data"_a, "device"_a = "cpu", "threads"_a = py::none(), "half"_a = false,
           "optimize"_a = false, "max_pixels"_a = emaseg::Options().max_pixels,
           "Loads a model from the bytes of an exported file (bytes, bytearray, memoryview).")
      .def_property_readonly("metadata", &emaseg::Segmenter::metadata,
                             py::return_value_policy::reference_internal)
      .def_property_readonly("device", &emaseg::Segmenter::device)
      .def_property_readonly("threads", [](const emaseg::Segmenter& s) -> std::optional<int> {
        if (s.options().threads == 0) return std::nullopt;
        return s.options().threads;
      })
      .def_property_readonly("half", [](const emaseg::Segmenter& s) { return s.options().half; })
      .def_property_readonly("optimize",
                             [](const emaseg::Segmenter& s) { return s.options().optimize; })
      .def_property_readonly("max_pixels",
                             [](const emaseg::Segmenter& s) { return s.options().max_pixels; })
      .def("segment", [](const emaseg::Segmenter& s, const py::object& frame) {
        const MatView view = frame_view(frame);
        cv::Mat labels;
        {
          py::gil_scoped_release release;
          labels = s.segment(view.mat);
        }
        return to_numpy(std::move(labels));
      }, "frame"_a, "Labels (H x W, uint8; int32 beyond 256 classes) of a uint8 H x W x 3 BGR frame.")
      .def("segment_batch", [](const emaseg::Segmenter& s, const py::object& frames) {
        const std::vector<MatView> views = batch_views(frames);
        std::vector<cv::Mat> mats;
        for (const MatView& view : views) mats.push_back(view.mat);
        std::vector<cv::Mat> labels;
        {
          py::gil_scoped_release release;
          labels = s.segment_batch(mats);
        }
        py::list out;
        for (cv::Mat& map : labels) out.append(to_numpy(std::move(map)));
        return out;
      }, "frames"_a, "Labels of each frame of a list or an N x H x W x 3 array, as segment() gives.")
      .def("probabilities", [](const emaseg::Segmenter& s, const py::object& frame) {
        const MatView view = frame_view(frame);
        std::vector<cv::Mat> planes;
        {
          py::gil_scoped_release release;
          planes = s.probabilities(view.mat);
        }
        return planes_to_numpy(planes, view.mat.rows, view.mat.cols);
      }, "frame"_a, "Softmax probabilities of a BGR frame, float32 num_classes x H x W.")
      .def("warmup", [](const emaseg::Segmenter& s, std::pair<int, int> size, int runs) {
        py::gil_scoped_release release;
        s.warmup(cv::Size(size.second, size.first), runs);
      }, "size"_a = std::make_pair(512, 512), "runs"_a = 2,
         "Runs the model on a black frame of size (height, width), so lazy set-up is done.")
      .def("colorize", [](const emaseg::Segmenter& s, const py::object& labels) {
        const MatView view = labels_view(labels);
        cv::Mat out;
        {
          py::gil_scoped_release release;
          out = s.colorize(view.mat);
        }
        return to_numpy(std::move(out));
      }, "labels"_a, "BGR image of a label map in the model's palette; other ids are black.")
      .def("overlay", [](const emaseg::Segmenter& s, const py::object& frame,
                         const py::object& labels, double alpha) {
        const MatView frame_mat = frame_view(frame);
        const MatView labels_mat = labels_view(labels);
        cv::Mat out;
        {
          py::gil_scoped_release release;
          out = s.overlay(frame_mat.mat, labels_mat.mat, alpha);
        }
        return to_numpy(std::move(out));
      }, "frame"_a, "labels"_a, "alpha"_a = 0.5,
         "frame * (1 - alpha) + colorize(labels) * alpha, as uint8 BGR; alpha in [0, 1].")
      .def("__repr__", &segmenter_repr);

  m.def("process_video", &process_video, "input"_a, "output"_a = py::none(), py::kw_only(),
        "model"_a, "device"_a = "cpu", "threads"_a = py::none(), "half"_a = false,
        "optimize"_a = false, "max_pixels"_a = emaseg::Options().max_pixels, "alpha"_a = 0.5, "every"_a = 1, "max_frames"_a = py::none(), "mask_dir"_a = py::none(),
        "fourcc"_a = "mp4v", "progress"_a = py::none(),
        "Segments a video, stream or camera with the C++ pipeline; returns a summary dict.");
  m.def("process_streams", &process_streams, "sources"_a, "on_frame"_a = py::none(), py::kw_only(), "model"_a,
        "device"_a = "cpu", "threads"_a = py::none(), "workers"_a = py::none(), "max_frames"_a = py::none(), "every"_a = 1,
        "stall_timeout"_a = 10.0,
        "Runs several videos or streams through one model (emaseg::MultiPipeline); on_frame(name, index, "
        "frame, labels) is called from each stream's own thread. Returns one stats dict per stream.");
}
