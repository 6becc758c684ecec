from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.cmake import CMake, CMakeToolchain, CMakeDeps, cmake_layout


class WsgateConan(ConanFile):
    name = "wsgate"
    version = "0.1.0"
    license = "MIT"
    description = "Embeddable C++20 library for real-time WebSocket back ends"
    topics = ("websocket", "realtime", "pubsub", "jwt", "api-gateway")
    settings = "os", "compiler", "build_type", "arch"
    # Options map one-to-one to the CMake options WSGATE_WITH_* and vcpkg features
    # (tests/package/check_option_maps.cmake checks that they do).
    options = {
        "shared": [True, False],
        "fPIC": [True, False],
        "with_auth": [True, False],
        "with_sqlite": [True, False],
        "with_redis": [True, False],
        "with_beast": [True, False],
        "with_aws": [True, False],
        "with_dynamodb": [True, False],
    }
    default_options = {
        "shared": False,
        "fPIC": True,
        "with_auth": True,
        "with_sqlite": True,
        "with_redis": True,
        "with_beast": True,
        "with_aws": True,
        "with_dynamodb": True,
    }
    exports_sources = "CMakeLists.txt", "cmake/*", "include/*", "src/*", "LICENSE"

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def validate(self):
        if self.options.with_dynamodb and not self.options.with_aws:
            raise ConanInvalidConfiguration(
                "wsgate: with_dynamodb needs with_aws (the DynamoDB store signs and sends its requests "
                "through wsgate::aws); set with_aws=True or with_dynamodb=False")

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        self.requires("nlohmann_json/3.11.3", transitive_headers=True)
        if self.options.with_auth or self.options.with_aws:
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
        tc.variables["WSGATE_WITH_AUTH"] = bool(self.options.with_auth)
        tc.variables["WSGATE_WITH_SQLITE"] = bool(self.options.with_sqlite)
        tc.variables["WSGATE_WITH_REDIS"] = bool(self.options.with_redis)
        tc.variables["WSGATE_WITH_BEAST"] = bool(self.options.with_beast)
        tc.variables["WSGATE_WITH_AWS"] = bool(self.options.with_aws)
        tc.variables["WSGATE_WITH_DYNAMODB"] = bool(self.options.with_dynamodb)
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        CMake(self).install()

    def package_info(self):
        # One component per CMake target of the installed package, with the same requires.
        self.cpp_info.set_property("cmake_file_name", "wsgate")

        def component(name, lib, requires):
            c = self.cpp_info.components[name]
            c.set_property("cmake_target_name", f"wsgate::{'wsgate' if name == 'core' else name}")
            c.libs = [lib]
            c.requires = requires
            if self.settings.os in ("Linux", "FreeBSD"):
                c.system_libs = ["pthread"]
            return c

        component("core", "wsgate", ["nlohmann_json::nlohmann_json"])
        component("client", "wsgate_client", ["core"])
        component("stream", "wsgate_stream", ["core"])
        if self.options.with_auth:
            component("auth", "wsgate_auth", ["core", "openssl::crypto"])
        if self.options.with_sqlite:
            component("sqlite", "wsgate_sqlite", ["core", "sqlite3::sqlite3"])
        if self.options.with_redis:
            component("redis", "wsgate_redis", ["core", "hiredis::hiredis"])
        if self.options.with_beast:
            # Boost is header-only and private to wsgate::beast; listed so Conan sees it used.
            component("beast", "wsgate_beast", ["core", "client", "boost::headers"])
        if self.options.with_aws:
            component("aws", "wsgate_aws", ["core", "libcurl::libcurl", "openssl::crypto"])
        if self.options.with_dynamodb:
            # The DynamoDB store talks to DynamoDB through wsgate::aws's SigV4 signer and curl client.
            component("dynamodb", "wsgate_dynamodb", ["core", "aws"])
        stores = ["core"] + [m for m in ("sqlite", "redis", "dynamodb") if self.options.get_safe(f"with_{m}")]
        component("stores", "wsgate_stores", stores)
