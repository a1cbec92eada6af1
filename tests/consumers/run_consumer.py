#!/usr/bin/env python3
"""Builds and runs one consumer of iwsec, as a user would (ctest drives it).

    run_consumer.py ROUTE --source-dir SRC --build-dir BUILD --work-dir DIR
                    --cxx CXX --cmake CMAKE [--generator G] [--meson M --ninja N]
                    [--version V]

ROUTE is one of:
  install           cmake --install BUILD into DIR/prefix; check the files
  find_package      a CMake project: find_package(iwsec) from that prefix
  pkg_config        a program built with `pkg-config --cflags --libs iwsec`
                    from that prefix
  add_subdirectory  a CMake project: add_subdirectory(SRC)
  meson             a Meson project, iwsec in subprojects/, dependency('iwsec')
  single_header     a project holding only a copy of single_include/iwsec/iwsec.hpp,
                    built against the system's httplib/picojson/OpenSSL
                    through pkg-config
  upstream_add_subdirectory
                    a CMake host that add_subdirectory's upstream cpp-httplib's
                    source (IWSEC_TEST_HTTPLIB_SOURCE_DIR), then iwsec's
  meson_upstream    a Meson host with upstream cpp-httplib's source as the
                    subproject cpp-httplib, then iwsec's
  upstream_find_package
                    CMake hosts with upstream cpp-httplib's CMake install
                    (IWSEC_TEST_HTTPLIB_PREFIX) and the installed iwsec
The upstream_* and meson_upstream routes check the program was built with that cpp-httplib and
exit 77 (skipped) when their variable is not set.

Each program route builds tests/consumers/common/{consumer,snippet}.cpp and
runs it: it serves on 127.0.0.1 (OS-picked port), answers real requests,
checks them and stops. Python 3 standard library only.
"""

import argparse
import filecmp
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = os.path.join(HERE, "common")
SOURCES = ["consumer.cpp", "snippet.cpp"]


class Failure(Exception):
    pass


def run(cmd, cwd=None, env=None, timeout=240):
    print("+ " + " ".join(cmd), flush=True)
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Failure("timed out after %d s: %s\n%s" % (timeout, " ".join(cmd), e.output or ""))
    except OSError as e:
        raise Failure("cannot run %s: %s" % (cmd[0], e))
    if done.returncode != 0:
        raise Failure("exit status %d from: %s\n%s" % (done.returncode, " ".join(cmd), done.stdout))
    return done.stdout


def fresh_dir(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def run_consumer(program, httplib_version=None):
    out = run([program], timeout=60)
    sys.stdout.write(out)
    if "consumer: iwsec" not in out:
        raise Failure("the consumer program did not report success")
    if httplib_version and ("(cpp-httplib %s," % httplib_version) not in out:
        raise Failure("the consumer was not built with the host's cpp-httplib %s" % httplib_version)


def prefix_of(args):
    return os.path.join(os.path.dirname(args.work_dir), "prefix")


def route_install(args):
    prefix = fresh_dir(prefix_of(args))
    run([args.cmake, "--install", args.build_dir, "--prefix", prefix])
    expected = [
        "include/iwsec/iwsec.hpp",
        "include/iwsec/version.hpp",
        "include/iwsec/detail/crypto.hpp",
        "include/iwsec/single/iwsec.hpp",
        "lib/cmake/iwsec/iwsecConfig.cmake",
        "lib/cmake/iwsec/iwsecConfigVersion.cmake",
        "lib/cmake/iwsec/iwsecTargets.cmake",
        "share/pkgconfig/iwsec.pc",
    ]
    missing = [f for f in expected if not os.path.isfile(os.path.join(prefix, f))]
    if missing:
        raise Failure("cmake --install did not install: " + ", ".join(missing))
    # Every header of include/iwsec is installed, unchanged.
    include_root = os.path.join(args.source_dir, "include")
    for directory, _, files in os.walk(os.path.join(include_root, "iwsec")):
        for name in files:
            if name.endswith(".hpp"):
                relative = os.path.relpath(os.path.join(directory, name), include_root)
                installed = os.path.join(prefix, "include", relative)
                if not os.path.isfile(installed) or not filecmp.cmp(os.path.join(include_root, relative), installed, shallow=False):
                    raise Failure("installed %s differs from the source (or is missing)" % relative)
    if not filecmp.cmp(os.path.join(args.source_dir, "single_include", "iwsec", "iwsec.hpp"),
                       os.path.join(prefix, "include", "iwsec", "single", "iwsec.hpp"), shallow=False):
        raise Failure("installed include/iwsec/single/iwsec.hpp differs from single_include/iwsec/iwsec.hpp")
    version_file = open(os.path.join(prefix, "lib/cmake/iwsec/iwsecConfigVersion.cmake")).read()
    if 'set(PACKAGE_VERSION "%s")' % args.version not in version_file:
        raise Failure("iwsecConfigVersion.cmake does not carry version " + args.version)
    print("installed iwsec %s into %s" % (args.version, prefix))


def cmake_consumer(args, extra):
    project = fresh_dir(args.work_dir)
    build = os.path.join(project, "build")
    configure = [args.cmake, "-S", os.path.join(HERE, "cmake"), "-B", build,
                 "-DCMAKE_CXX_COMPILER=" + args.cxx, "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF",
                 "-DIWSEC_EXPECTED_VERSION=" + args.version] + extra
    if args.generator:
        configure += ["-G", args.generator]
    run(configure)
    # A newer cpp-httplib is one header of 10 to 20 thousand lines: allow for
    # a busy machine.
    run([args.cmake, "--build", build, "-j2"], timeout=600)
    return build


def route_find_package(args):
    prefix = prefix_of(args)
    if not os.path.isfile(os.path.join(prefix, "lib/cmake/iwsec/iwsecConfig.cmake")):
        raise Failure("no install under %s (the consumer_install test sets it up)" % prefix)
    build = cmake_consumer(args, ["-DIWSEC_CONSUME=find_package", "-DCMAKE_PREFIX_PATH=" + prefix])
    cache = open(os.path.join(build, "CMakeCache.txt")).read()
    wanted = "iwsec_DIR:PATH=" + os.path.join(prefix, "lib/cmake/iwsec")
    if wanted not in cache:
        raise Failure("find_package(iwsec) did not use the temporary prefix (%s not in the cache)" % wanted)
    run_consumer(os.path.join(build, "consumer"))
    check_version_compatibility(args, prefix)


VERSION_CHECK = """cmake_minimum_required(VERSION 3.16)
project(iwsec_version_check LANGUAGES CXX)
foreach(request %s)
  find_package(iwsec ${request} QUIET)
  if(iwsec_FOUND)
    message(STATUS "iwsec-version-check ${request} found")
  else()
    message(STATUS "iwsec-version-check ${request} refused")
  endif()
  unset(iwsec_FOUND)
endforeach()
"""


def check_version_compatibility(args, prefix):
    """SameMinorVersion: X.Y and X.Y.Z-or-older are satisfied; X.Y+1, X+1.Y and a newer patch are not."""
    major, minor, patch = (int(p) for p in args.version.split("."))
    expected = {
        "%d.%d" % (major, minor): True,
        "%d.%d.%d" % (major, minor, patch): True,
        "%d.%d.%d" % (major, minor, patch + 1): False,
        "%d.%d" % (major, minor + 1): False,
        "%d.%d" % (major + 1, minor): False,
    }
    if minor > 0:
        expected["%d.%d" % (major, minor - 1)] = False
    project = fresh_dir(os.path.join(args.work_dir, "version_check"))
    with open(os.path.join(project, "CMakeLists.txt"), "w") as f:
        f.write(VERSION_CHECK % " ".join(expected))
    out = run([args.cmake, "-S", project, "-B", os.path.join(project, "build"),
               "-DCMAKE_CXX_COMPILER=" + args.cxx, "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF",
               "-DCMAKE_PREFIX_PATH=" + prefix])
    for request, found in expected.items():
        want = "iwsec-version-check %s %s" % (request, "found" if found else "refused")
        got = [l.split("-- ", 1)[-1].strip() for l in out.splitlines() if ("iwsec-version-check %s " % request) in l]
        if got != [want]:
            raise Failure("find_package(iwsec %s) against version %s: expected %s, got %r"
                          % (request, args.version, "found" if found else "not found", got))
    print("find_package(iwsec VERSION): %s" % ", ".join(
        "%s %s" % (r, "found" if f else "refused") for r, f in expected.items()))


def route_add_subdirectory(args):
    build = cmake_consumer(args, ["-DIWSEC_CONSUME=add_subdirectory", "-DIWSEC_SOURCE_DIR=" + args.source_dir])
    run_consumer(os.path.join(build, "consumer"))
    # Not top-level: iwsec adds no install rules to its parent.
    prefix = os.path.join(args.work_dir, "parent-prefix")
    run([args.cmake, "--install", build, "--prefix", prefix])
    installed = [os.path.join(d, f) for d, _, files in os.walk(prefix) for f in files]
    if installed:
        raise Failure("installing the parent project installed iwsec files: " + ", ".join(sorted(installed)))


def pkg_config(modules, extra_path=None):
    env = dict(os.environ)
    if extra_path:
        env["PKG_CONFIG_PATH"] = extra_path + (os.pathsep + env["PKG_CONFIG_PATH"] if env.get("PKG_CONFIG_PATH") else "")
    cflags = run(["pkg-config", "--cflags"] + modules, env=env).split()
    libs = run(["pkg-config", "--libs"] + modules, env=env).split()
    return cflags, libs


def compile_and_run(args, project, cflags, libs):
    objects = []
    for source in SOURCES:
        obj = os.path.join(project, source + ".o")
        run([args.cxx, "-std=c++17"] + cflags + ["-c", os.path.join(project, source), "-o", obj])
        objects.append(obj)
    program = os.path.join(project, "consumer")
    run([args.cxx] + objects + ["-o", program] + libs)
    run_consumer(program)


def copy_sources(project):
    for source in SOURCES:
        shutil.copy(os.path.join(COMMON, source), project)


def route_pkg_config(args):
    prefix = prefix_of(args)
    pc_dir = os.path.join(prefix, "share", "pkgconfig")
    if not os.path.isfile(os.path.join(pc_dir, "iwsec.pc")):
        raise Failure("no iwsec.pc under %s (the consumer_install test sets it up)" % pc_dir)
    project = fresh_dir(args.work_dir)
    copy_sources(project)
    cflags, libs = pkg_config(["iwsec"], pc_dir)
    include = "-I" + os.path.join(prefix, "include")
    if os.path.normpath(include[2:]) not in [os.path.normpath(f[2:]) for f in cflags if f.startswith("-I")]:
        raise Failure("pkg-config --cflags iwsec lacks %s: %s" % (include, " ".join(cflags)))
    if "-DCPPHTTPLIB_OPENSSL_SUPPORT" not in cflags:
        raise Failure("pkg-config --cflags iwsec lacks cpp-httplib's flags: " + " ".join(cflags))
    if "-lcrypto" not in libs:
        raise Failure("pkg-config --libs iwsec lacks -lcrypto: " + " ".join(libs))
    compile_and_run(args, project, cflags, libs)


def route_single_header(args):
    # A fresh project: the two sources and one copied file, include/iwsec/iwsec.hpp.
    project = fresh_dir(args.work_dir)
    copy_sources(project)
    os.makedirs(os.path.join(project, "include", "iwsec"))
    shutil.copy(os.path.join(args.source_dir, "single_include", "iwsec", "iwsec.hpp"),
                os.path.join(project, "include", "iwsec", "iwsec.hpp"))
    cflags, libs = pkg_config(["cpp-httplib", "libcrypto"])
    compile_and_run(args, project, ["-I" + os.path.join(project, "include")] + cflags, libs)


def route_meson(args):
    if not args.meson or not args.ninja:
        raise Failure("the meson route needs --meson and --ninja")
    project = fresh_dir(args.work_dir)
    copy_sources(project)
    shutil.copy(os.path.join(HERE, "meson", "meson.build"), project)
    os.makedirs(os.path.join(project, "subprojects"))
    os.symlink(args.source_dir, os.path.join(project, "subprojects", "iwsec"))
    env = dict(os.environ, CXX=args.cxx, NINJA=args.ninja)
    build = os.path.join(project, "build")
    # --force-fallback-for: an iwsec installed on this machine must not stand
    # in for the subproject under test.
    out = run([args.meson, "setup", "--force-fallback-for=iwsec", build, project], env=env)
    if "Executing subproject iwsec" not in out:
        raise Failure("meson did not use subprojects/iwsec:\n" + out)
    run([args.ninja, "-C", build, "-j2"], env=env)
    run_consumer(os.path.join(build, "consumer"))


SKIPPED = 77  # ctest's SKIP_RETURN_CODE for these tests


class Skipped(Exception):
    pass


def httplib_header_version(path):
    with open(path) as f:
        for line in f:
            if line.startswith("#define CPPHTTPLIB_VERSION "):
                return line.split('"')[1]
    raise Failure("%s has no CPPHTTPLIB_VERSION" % path)


def route_upstream_add_subdirectory(args):
    """A host that add_subdirectory's upstream cpp-httplib's source, then iwsec's."""
    source = os.environ.get("IWSEC_TEST_HTTPLIB_SOURCE_DIR", "")
    if not source:
        raise Skipped("IWSEC_TEST_HTTPLIB_SOURCE_DIR is not set (scripts/get-cpp-httplib.sh VERSION PREFIX SOURCE_DIR "
                      "fetches one; CI sets it)")
    version = httplib_header_version(os.path.join(source, "httplib.h"))
    build = cmake_consumer(args, ["-DIWSEC_CONSUME=add_subdirectory", "-DIWSEC_SOURCE_DIR=" + args.source_dir,
                                  "-DIWSEC_HOST_HTTPLIB=add_subdirectory", "-DIWSEC_EXPECT_UPSTREAM_HTTPLIB=ON",
                                  "-DIWSEC_HOST_HTTPLIB_SOURCE_DIR=" + os.path.abspath(source)])
    run_consumer(os.path.join(build, "consumer"), version)


def route_upstream_find_package(args):
    """Hosts with upstream cpp-httplib's CMake install and an installed iwsec:
    one that find_package's httplib itself first, one that only points
    CMAKE_PREFIX_PATH at it. Both get that cpp-httplib, not Debian's."""
    prefix = os.environ.get("IWSEC_TEST_HTTPLIB_PREFIX", "")
    if not prefix:
        raise Skipped("IWSEC_TEST_HTTPLIB_PREFIX is not set (scripts/get-cpp-httplib.sh VERSION PREFIX installs one; "
                      "CI sets it)")
    iwsec_prefix = prefix_of(args)
    if not os.path.isfile(os.path.join(iwsec_prefix, "lib/cmake/iwsec/iwsecConfig.cmake")):
        raise Failure("no install under %s (the consumer_install test sets it up)" % iwsec_prefix)
    version = httplib_header_version(os.path.join(prefix, "include", "httplib.h"))
    work = args.work_dir
    for host in ("find_package", ""):
        args.work_dir = os.path.join(work, host or "prefix_path")
        build = cmake_consumer(args, ["-DIWSEC_CONSUME=find_package", "-DIWSEC_HOST_HTTPLIB=" + host,
                                      "-DIWSEC_EXPECT_UPSTREAM_HTTPLIB=ON",
                                      "-DCMAKE_PREFIX_PATH=%s;%s" % (os.path.abspath(prefix), iwsec_prefix)])
        run_consumer(os.path.join(build, "consumer"), version)
    args.work_dir = work


def route_meson_upstream(args):
    """A Meson host with upstream cpp-httplib's source as a subproject, then iwsec's."""
    source = os.environ.get("IWSEC_TEST_HTTPLIB_SOURCE_DIR", "")
    if not source:
        raise Skipped("IWSEC_TEST_HTTPLIB_SOURCE_DIR is not set (scripts/get-cpp-httplib.sh VERSION PREFIX SOURCE_DIR "
                      "fetches one; CI sets it)")
    if not args.meson or not args.ninja:
        raise Failure("the meson route needs --meson and --ninja")
    version = httplib_header_version(os.path.join(source, "httplib.h"))
    project = fresh_dir(args.work_dir)
    copy_sources(project)
    shutil.copy(os.path.join(HERE, "meson_upstream", "meson.build"), project)
    os.makedirs(os.path.join(project, "subprojects"))
    os.symlink(args.source_dir, os.path.join(project, "subprojects", "iwsec"))
    os.symlink(os.path.abspath(source), os.path.join(project, "subprojects", "cpp-httplib"))
    env = dict(os.environ, CXX=args.cxx, NINJA=args.ninja)
    build = os.path.join(project, "build")
    out = run([args.meson, "setup", "--force-fallback-for=iwsec,cpp-httplib", build, project], env=env)
    if "Executing subproject cpp-httplib" not in out:
        raise Failure("meson did not use subprojects/cpp-httplib:\n" + out)
    run([args.ninja, "-C", build, "-j2"], env=env, timeout=600)
    run_consumer(os.path.join(build, "consumer"), version)


ROUTES = {
    "meson_upstream": route_meson_upstream,
    "upstream_add_subdirectory": route_upstream_add_subdirectory,
    "upstream_find_package": route_upstream_find_package,
    "install": route_install,
    "find_package": route_find_package,
    "pkg_config": route_pkg_config,
    "add_subdirectory": route_add_subdirectory,
    "meson": route_meson,
    "single_header": route_single_header,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("route", choices=sorted(ROUTES))
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--cxx", required=True)
    parser.add_argument("--cmake", required=True)
    parser.add_argument("--generator", default="")
    parser.add_argument("--meson", default="")
    parser.add_argument("--ninja", default="")
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    args.source_dir = os.path.abspath(args.source_dir)
    args.work_dir = os.path.abspath(args.work_dir)
    try:
        ROUTES[args.route](args)
    except Failure as e:
        print("run_consumer.py %s: FAILED: %s" % (args.route, e), file=sys.stderr)
        return 1
    except Skipped as e:
        print("run_consumer.py %s: SKIPPED: %s" % (args.route, e))
        return SKIPPED
    print("run_consumer.py %s: ok" % args.route)
    return 0


if __name__ == "__main__":
    sys.exit(main())
