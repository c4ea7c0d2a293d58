#include "train/plot.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "util/json.h"

namespace coatnet::train {

namespace {

// 3×5 glyphs, one row per 3 bits, top row in the high bits.
unsigned glyph(char c) {
  static const struct {
    char c;
    unsigned bits;
  } kFont[] = {
      {'0', 075557}, {'1', 026227}, {'2', 071747}, {'3', 071717}, {'4', 055711}, {'5', 074717},
      {'6', 074757}, {'7', 071111}, {'8', 075757}, {'9', 075717}, {'A', 025755}, {'B', 065656},
      {'C', 034443}, {'D', 065556}, {'E', 074647}, {'F', 074644}, {'G', 034553}, {'H', 055755},
      {'I', 072227}, {'J', 011152}, {'K', 055655}, {'L', 044447}, {'M', 057755}, {'N', 065555},
      {'O', 025552}, {'P', 065644}, {'Q', 025563}, {'R', 065655}, {'S', 034216}, {'T', 072222},
      {'U', 055557}, {'V', 055552}, {'W', 055775}, {'X', 055255}, {'Y', 055222}, {'Z', 071247},
      {'.', 000002}, {'-', 000700}, {'%', 051245}, {':', 002020}, {'/', 011244}, {'(', 024442},
      {')', 021112}, {'+', 002720}, {'_', 000007}, {',', 000012},
  };
  c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const auto& g : kFont)
    if (g.c == c) return g.bits;
  return 0;
}

struct Canvas {
  int w, h;
  std::vector<unsigned char> px;  // RGB
  Canvas(int w_, int h_) : w(w_), h(h_), px(static_cast<size_t>(w_) * h_ * 3, 255) {}
  void set(int x, int y, unsigned rgb) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    unsigned char* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    p[0] = (rgb >> 16) & 255;
    p[1] = (rgb >> 8) & 255;
    p[2] = rgb & 255;
  }
  void rect(int x0, int y0, int x1, int y1, unsigned rgb) {
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) set(x, y, rgb);
  }
  void line(double x0, double y0, double x1, double y1, unsigned rgb, int thick = 2) {
    const int n = static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int i = 0; i <= n; ++i) {
      const double t = static_cast<double>(i) / n;
      const int x = static_cast<int>(std::lround(x0 + t * (x1 - x0)));
      const int y = static_cast<int>(std::lround(y0 + t * (y1 - y0)));
      rect(x, y, x + thick - 1, y + thick - 1, rgb);
    }
  }
  // Text at (x, y) top-left; `scale` pixels per font dot. Returns the width drawn.
  int text(int x, int y, const std::string& s, int scale, unsigned rgb = 0x222222) {
    for (size_t i = 0; i < s.size(); ++i) {
      const unsigned bits = glyph(s[i]);
      for (int row = 0; row < 5; ++row)
        for (int col = 0; col < 3; ++col)
          if (bits & (1u << ((4 - row) * 3 + (2 - col))))
            rect(x + (static_cast<int>(i) * 4 + col) * scale, y + row * scale,
                 x + (static_cast<int>(i) * 4 + col + 1) * scale - 1, y + (row + 1) * scale - 1,
                 rgb);
    }
    return static_cast<int>(s.size()) * 4 * scale;
  }
  static int text_width(const std::string& s, int scale) {
    return static_cast<int>(s.size()) * 4 * scale;
  }
};

void write_png(const std::string& path, const Canvas& c) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + path);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    throw std::runtime_error("libpng failed writing " + path);
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, c.w, c.h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < c.h; ++y)
    png_write_row(png, const_cast<png_bytep>(&c.px[static_cast<size_t>(y) * c.w * 3]));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fclose(f) != 0) throw std::runtime_error("cannot write " + path);
}

// Ticks at 1, 2 or 5 × 10^k covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target = 6) {
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    out.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return out;
}

std::string tick_label(double v) {
  char buf[32];
  if (v != 0 && (std::abs(v) < 1e-2 || std::abs(v) >= 1e5))
    std::snprintf(buf, sizeof buf, "%.0e", v);
  else
    std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

void plot_png(const std::string& path, const std::string& title, const std::string& x_label,
              const std::vector<Series>& series, int width, int height) {
  Canvas c(width, height);
  const int left = 80, right = width - 20, top = 50, bottom = height - 60;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const Series& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  c.text((width - Canvas::text_width(title, 3)) / 2, 12, title, 3);
  if (x0 > x1) {  // nothing recorded yet
    c.text(left, height / 2, "NO DATA", 3);
    write_png(path, c);
    return;
  }
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) {
    y0 -= std::abs(y0) * 0.1 + 1e-12;
    y1 += std::abs(y1) * 0.1 + 1e-12;
  }
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (right - left); };
  auto py = [&](double y) { return bottom - (y - y0) / (y1 - y0) * (bottom - top); };
  for (double t : nice_ticks(y0, y1)) {
    const int y = static_cast<int>(py(t));
    c.rect(left, y, right, y, 0xe6e6e6);
    const std::string l = tick_label(t);
    c.text(left - 8 - Canvas::text_width(l, 2), y - 5, l, 2);
  }
  for (double t : nice_ticks(x0, x1)) {
    const int x = static_cast<int>(px(t));
    c.rect(x, top, x, bottom, 0xe6e6e6);
    const std::string l = tick_label(t);
    c.text(x - Canvas::text_width(l, 2) / 2, bottom + 8, l, 2);
  }
  c.rect(left, top, right, top, 0x444444);
  c.rect(left, bottom, right, bottom, 0x444444);
  c.rect(left, top, left, bottom, 0x444444);
  c.rect(right, top, right, bottom, 0x444444);
  c.text((left + right - Canvas::text_width(x_label, 2)) / 2, height - 24, x_label, 2);
  int legend_x = left + 10;
  for (const Series& s : series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      if (s.points) {
        c.rect(static_cast<int>(px(s.x[i])) - 3, static_cast<int>(py(s.y[i])) - 3,
               static_cast<int>(px(s.x[i])) + 3, static_cast<int>(py(s.y[i])) + 3, s.rgb);
      }
      if (i > 0 && std::isfinite(s.y[i - 1]))
        c.line(px(s.x[i - 1]), py(s.y[i - 1]), px(s.x[i]), py(s.y[i]), s.rgb);
    }
    c.rect(legend_x, top + 10, legend_x + 14, top + 18, s.rgb);
    legend_x += 22 + c.text(legend_x + 20, top + 9, s.label, 2) + 16;
  }
  write_png(path, c);
}

std::vector<std::string> plot_run(const std::string& run_dir) {
  namespace fs = std::filesystem;
  const fs::path metrics = fs::path(run_dir) / "metrics.jsonl";
  std::ifstream in(metrics);
  if (!in)
    throw std::runtime_error("cannot read " + metrics.string() + ": is " + run_dir +
                             " a run directory of coatnet train?");
  Series loss{"train loss", {}, {}, 0x1f77b4}, val_loss{"val loss", {}, {}, 0xd62728, true};
  Series lr{"learning rate", {}, {}, 0x2ca02c};
  Series top1{"top-1 %", {}, {}, 0x1f77b4, true}, top5{"top-5 %", {}, {}, 0xff7f0e, true};
  Series ema1{"EMA top-1 %", {}, {}, 0x9467bd, true};
  Series ips{"images/s", {}, {}, 0x8c564b};
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    json::Value r;
    try {
      r = json::Value::parse(line);
    } catch (const std::exception& e) {
      // A run killed mid-write leaves a partial last line; anything else is worth naming.
      std::fprintf(stderr, "coatnet plot: %s:%lld: skipped (%s)\n", metrics.c_str(),
                   static_cast<long long>(line_no), e.what());
      continue;
    }
    if (!r.is_object()) continue;
    const auto type = r.find("type"), step = r.find("step");
    if (type == r.end() || !type->is_string() || step == r.end() || !step->is_number()) continue;
    const double x = step->get<double>();
    auto get = [&](const char* k) {
      const auto it = r.find(k);
      return it != r.end() && it->is_number() ? it->get<double>() : NAN;
    };
    const std::string kind = type->get<std::string>();
    if (kind == "train") {
      loss.x.push_back(x), loss.y.push_back(get("loss"));
      lr.x.push_back(x), lr.y.push_back(get("lr"));
      ips.x.push_back(x), ips.y.push_back(get("images_per_s"));
    } else if (kind == "eval") {
      const bool is_ema = r.value("ema", false);
      if (is_ema) {
        ema1.x.push_back(x), ema1.y.push_back(100 * get("val_top1"));
      } else {
        top1.x.push_back(x), top1.y.push_back(100 * get("val_top1"));
        top5.x.push_back(x), top5.y.push_back(100 * get("val_top5"));
        val_loss.x.push_back(x), val_loss.y.push_back(get("val_loss"));
      }
    }
  }
  std::vector<std::string> out;
  auto emit = [&](const char* file, const char* title, std::vector<Series> s) {
    const std::string path = (fs::path(run_dir) / file).string();
    plot_png(path, title, "step", s);
    out.push_back(path);
  };
  emit("loss.png", "loss", {loss, val_loss});
  emit("lr.png", "learning rate", {lr});
  std::vector<Series> acc{top1, top5};
  if (!ema1.x.empty()) acc.push_back(ema1);
  emit("accuracy.png", "validation accuracy", acc);
  emit("throughput.png", "throughput (images/s)", {ips});
  return out;
}

}  // namespace coatnet::train
