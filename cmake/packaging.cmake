# Install layout and the Debian package (`cpack -G DEB`, see scripts/package.sh).
#
# The package installs with prefix /usr (CPack's default for DEB):
#   /usr/bin/kubevirt-cri                      the daemon (install rule in shim/)
#   /usr/bin/containerd-shim-kubevirt-v1       containerd's runtime handler (shim/containerd/)
#   /lib/systemd/system/kubevirt-cri.service   the unit (KillMode=process: VMs outlive the daemon)
#   /etc/kubevirt-cri/config.toml              the documented default config, a dpkg conffile
#   /usr/share/doc/kubevirt-cri/               README and docs/*.md
#   /usr/share/kubevirt-cri/                   RuntimeClass, kubelet/containerd snippets, Butane config
# /etc and /lib/systemd/system are absolute: dpkg and systemd fix them, not the prefix.
# For a plain `cmake --install`, use `--prefix /usr` so the unit's ExecStart matches.

set(KVCRI_SYSCONF_DIR /etc/kubevirt-cri)
set(KVCRI_UNIT_DIR /lib/systemd/system)

install(FILES ${CMAKE_SOURCE_DIR}/config/kubevirt-cri.service DESTINATION ${KVCRI_UNIT_DIR})
install(FILES ${CMAKE_SOURCE_DIR}/config/kubevirt-cri.toml DESTINATION ${KVCRI_SYSCONF_DIR}
        RENAME config.toml PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION share/doc/kubevirt-cri)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION share/doc/kubevirt-cri FILES_MATCHING PATTERN "*.md")
install(FILES ${CMAKE_SOURCE_DIR}/config/runtimeclass.yaml ${CMAKE_SOURCE_DIR}/config/kubevirt-cri.bu
        DESTINATION share/kubevirt-cri)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/config/snippets/ DESTINATION share/kubevirt-cri/snippets)

# --- CPack: one Debian package ---------------------------------------------
set(CPACK_PACKAGE_NAME kubevirt-cri)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "kubevirt-cri")
set(CPACK_PACKAGE_CONTACT "kubevirt-cri maintainers <kubevirt-cri@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Kubernetes CRI runtime that runs Pods as QEMU/KVM virtual machines")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "kubevirt-cri serves the Kubernetes Container Runtime Interface (runtime.v1) on a unix socket and\n"
  "runs Pods of the `kubevirt` RuntimeClass as QEMU virtual machines through libvirt's embedded QEMU\n"
  "driver (no libvirtd needed). VMs outlive the daemon: stopping, restarting or upgrading it leaves\n"
  "them running.")
set(CPACK_STRIP_FILES ON)  # debug info stays in the build tree

set(CPACK_DEBIAN_PACKAGE_NAME kubevirt-cri)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # kubevirt-cri_<version>-<release>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/kubevirt-cri/kubevirt-cri")
# Shared libraries (gRPC, protobuf, Abseil, libvirt, ...) come from dpkg-shlibdeps;
# the programs the daemon runs rather than links are listed by hand.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libvirt-daemon, libvirt-daemon-driver-qemu, qemu-system-x86, qemu-utils, containernetworking-plugins, iproute2, ovmf, passwd, iptables")
# crun, a kernel, cpio and kmod: the Pod micro-VM's boot files (runtime/microvm/build-microvm.sh).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "containerd, crun, linux-image-amd64, cpio, kmod")
# swtpm: only Pods with the kubevirt-cri.io/tpm annotation (docs/security.md "vTPM").
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "cri-tools, swtpm, swtpm-tools")

# Maintainer scripts and the conffile list. Scripts never stop or kill VMs.
set(_kvcri_conffiles ${CMAKE_BINARY_DIR}/cpack-deb/conffiles)
file(WRITE ${_kvcri_conffiles} "${KVCRI_SYSCONF_DIR}/config.toml\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${_kvcri_conffiles};${CMAKE_SOURCE_DIR}/cmake/deb/postinst;${CMAKE_SOURCE_DIR}/cmake/deb/prerm;${CMAKE_SOURCE_DIR}/cmake/deb/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_GENERATOR DEB)
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
