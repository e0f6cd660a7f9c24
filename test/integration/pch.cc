// Empty: the object that compiles the integration tests' shared precompiled header (test/CMakeLists.txt).
