// iwsec/detail/log_writer.hpp: the buffered log file of the access log
// (WhenFull::drop) and of anything that must not lose a line
// (WhenFull::block): whole lines only, everything written by stop(), flush()
// waits for the file, reopen() follows a rename, a full buffer drops (and
// counts) or makes the caller wait.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iwsec/iwsec.hpp>

#include "support/temp_dir.hpp"

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    lines.push_back(text.substr(start, nl - start));
  CHECK(start == text.size());  // no partial last line
  return lines;
}

std::string line(int thread, int i) { return "t" + std::to_string(thread) + " line " + std::to_string(i) + "\n"; }

}  // namespace

TEST_CASE("block: many threads, a tiny buffer, every line written whole by stop()", "[log_writer]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("audit.log");
  iwsec::detail::BufferedWriter w(path, iwsec::detail::WhenFull::block, 64, std::chrono::milliseconds(1000));
  REQUIRE(w.start().empty());
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};  // Catch2's CHECK is for the test's own thread
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&w, &refused, t] {
      for (int i = 0; i < 500; ++i)
        if (!w.write(line(t, i))) ++refused;
    });
  for (auto& t : threads) t.join();
  w.stop();
  CHECK(refused == 0);
  const auto lines = lines_of(iwsec_test::read_file(path));
  CHECK(lines.size() == 2000);
  CHECK(w.dropped_lines() == 0);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("flush() returns once the lines are in the file; reopen() follows a rename", "[log_writer]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("access.log");
  std::atomic<int> opened{0};  // counted on the writer's thread
  iwsec::detail::BufferedWriter w(path, iwsec::detail::WhenFull::drop, 1 << 20, std::chrono::milliseconds(60000));
  w.on_open([&opened](int fd, const std::string&) {
    if (fd >= 0) ++opened;
  });
  REQUIRE(w.start().empty());
  w.write("first\n");
  w.flush();  // long before the 60 s delay
  CHECK(iwsec_test::read_file(path) == "first\n");
  REQUIRE(std::rename(path.c_str(), dir.file("access.log.1").c_str()) == 0);
  w.write("second\n");
  w.reopen();
  w.flush();
  w.write("third\n");
  w.stop();
  CHECK(iwsec_test::read_file(dir.file("access.log.1")) == "first\nsecond\n");
  CHECK(iwsec_test::read_file(path) == "third\n");
  CHECK(opened == 2);
}

TEST_CASE("drop: a full buffer drops whole lines and counts them, the caller never waits", "[log_writer]") {
  iwsec_test::TempDir dir;
  // A pipe nobody reads: the writer is stuck once the pipe is full.
  const std::string fifo = dir.file("log.fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  REQUIRE(reader >= 0);
  iwsec::detail::BufferedWriter w(fifo, iwsec::detail::WhenFull::drop, 1024, std::chrono::milliseconds(1));
  REQUIRE(w.start().empty());
  const std::string text(99, 'x');
  int sent = 0;
  while (w.dropped_lines() == 0 && sent < 100000) {
    w.write(text + "\n");
    ++sent;
  }
  REQUIRE(w.dropped_lines() > 0);
  // Read everything: the writer resumes; stop() writes what the buffer holds.
  std::string received;
  std::thread drain([&] {
    ::fcntl(reader, F_SETFL, 0);
    char buffer[65536];
    for (ssize_t n; (n = ::read(reader, buffer, sizeof buffer)) > 0;) received.append(buffer, static_cast<std::size_t>(n));
  });
  w.stop();
  drain.join();
  ::close(reader);
  const auto lines = lines_of(received);
  for (const auto& l : lines) CHECK(l == text);
  CHECK(lines.size() + w.dropped_lines() == static_cast<std::size_t>(sent));
}

TEST_CASE("a path that cannot be opened is an error naming it", "[log_writer]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("missing/dir/access.log");
  iwsec::detail::BufferedWriter w(path, iwsec::detail::WhenFull::drop, 1024, std::chrono::milliseconds(10), "access log");
  const std::string error = w.start();
  CHECK(error.find("access log " + path) != std::string::npos);
}

TEST_CASE("audit file: a line written after stop() still reaches the file", "[log_writer][audit]") {
  iwsec_test::TempDir dir;
  const std::string path = dir.file("audit.log");
  iwsec::AuditFile audit(path, "", nullptr);
  REQUIRE(audit.ok());
  audit.write("{\"event\":\"before\"}\n");
  audit.stop();
  // A request that finishes while the server shuts down: no writer is left.
  audit.write("{\"event\":\"after\"}\n");
  std::string text;
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    REQUIRE(f);
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) text.append(buffer, n);
    std::fclose(f);
  }
  const auto lines = lines_of(text);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "{\"event\":\"before\"}");
  CHECK(lines[1] == "{\"event\":\"after\"}");
}
