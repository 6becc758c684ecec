from conan import ConanFile
from conan.tools.cmake import CMake, CMakeToolchain, CMakeDeps, cmake_layout


class WsgateConan(ConanFile):
    name = "wsgate"
    version = "0.1.0"
    license = "MIT"
    description = "Embeddable C++20 library for real-time WebSocket back ends"
    topics = ("websocket", "realtime", "pubsub", "jwt", "api-gateway")
    settings = "os", "compiler", "build_type", "arch"
    # Options map one-to-one to the CMake options WSGATE_WITH_* and vcpkg features.
    options = {
        "shared": [True, False],
        "fPIC": [True, False],
        "with_sqlite": [True, False],
        "with_redis": [True, False],
        "with_beast": [True, False],
        "with_aws": [True, False],
    }
    default_options = {
        "shared": False,
        "fPIC": True,
        "with_sqlite": True,
        "with_redis": True,
        "with_beast": True,
        "with_aws": True,
    }
    exports_sources = "CMakeLists.txt", "cmake/*", "include/*", "src/*", "LICENSE"

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        self.requires("nlohmann_json/3.11.3", transitive_headers=True)
        self.requires("openssl/[>=1.1.1 <4]")
        if self.options.with_sqlite:
            self.requires("sqlite3/3.45.0")
        if self.options.with_redis:
            self.requires("hiredis/1.2.0")
        if self.options.with_beast:
            self.requires("boost/1.84.0")
        if self.options.with_aws:
            self.requires("libcurl/8.6.0")

    def build_requirements(self):
        self.test_requires("catch2/2.13.10")

    def generate(self):
        tc = CMakeToolchain(self)
        tc.variables["WSGATE_BUILD_TESTS"] = False
        tc.variables["WSGATE_BUILD_EXAMPLES"] = False
        tc.variables["WSGATE_BUILD_BENCHMARKS"] = False
        tc.variables["WSGATE_WITH_SQLITE"] = bool(self.options.with_sqlite)
        tc.variables["WSGATE_WITH_REDIS"] = bool(self.options.with_redis)
        tc.variables["WSGATE_WITH_BEAST"] = bool(self.options.with_beast)
        tc.variables["WSGATE_WITH_AWS"] = bool(self.options.with_aws)
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        CMake(self).install()

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "wsgate")
        core = self.cpp_info.components["core"]
        core.set_property("cmake_target_name", "wsgate::wsgate")
        core.libs = ["wsgate"]
        core.requires = ["nlohmann_json::nlohmann_json", "openssl::crypto"]
        for opt, comp, dep in (("with_sqlite", "sqlite", "sqlite3::sqlite3"),
                               ("with_redis", "redis", "hiredis::hiredis"),
                               ("with_beast", "beast", "boost::headers"),
                               ("with_aws", "aws", "libcurl::libcurl")):
            if self.options.get_safe(opt):
                c = self.cpp_info.components[comp]
                c.set_property("cmake_target_name", f"wsgate::{comp}")
                c.libs = [f"wsgate_{comp}"]
                c.requires = ["core", dep]
