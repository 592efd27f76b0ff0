# install.cmake - what `cmake --install` puts where (GNUInstallDirs), the
# pkg-config file, and CPack's .deb. Included from the top CMakeLists.txt.

# The installed binary finds libclipscore.so beside it ($ORIGIN, so any
# --prefix works) and a libtorch outside the system folders (a CUDA one) where
# it was linked; an install into /usr gets no RPATH (see below).
file(RELATIVE_PATH CS_BIN_TO_LIB ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_LIBDIR})
set_target_properties(clipscore PROPERTIES INSTALL_RPATH "$ORIGIN/${CS_BIN_TO_LIB}"
                                           INSTALL_RPATH_USE_LINK_PATH ON)
set_target_properties(clipscore_shared PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)

# Two components, one .deb each: Runtime (the program, libclipscore.so.N,
# man page, completion, docs) and Development (header, libclipscore.so,
# libclipscore.a, pkg-config). A plain `cmake --install` installs both.
install(TARGETS clipscore RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT Runtime)
install(TARGETS clipscore_shared
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Runtime NAMELINK_COMPONENT Development)
install(TARGETS clipscore_static ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development)
install(FILES include/clipscore.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT Development)

# The prefix is only known at install time (--prefix, or /usr for the .deb),
# so the RPATH is relative, and it is dropped where the loader looks anyway.
install(CODE "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    file(RPATH_REMOVE FILE \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/clipscore\")
  endif()" COMPONENT Runtime)

# pkg-config: the prefix is found from the .pc file's own place, so the file
# stays right wherever the tree is installed. Static linking (libclipscore.a)
# needs the dependencies: Requires.private for those with a .pc file;
# libtorch has none, and libcurl goes in Libs.private too, because its .pc's
# static closure (nghttp2, ssh2, ldap...) is more than Debian's libcurl-dev
# installs, and libtorch being shared-only, a fully static link is out of
# reach anyway.
file(RELATIVE_PATH CS_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" CS_PC_TO_PREFIX "${CS_PC_TO_PREFIX}")
set(CS_PC_REQUIRES libcjson libutf8proc zlib libcrypto)
if(JPEG_FOUND)
  list(APPEND CS_PC_REQUIRES libjpeg)
endif()
if(CLIPSCORE_FIGURES)
  list(APPEND CS_PC_REQUIRES pangocairo)
endif()
string(REPLACE ";" " " CS_PC_REQUIRES "${CS_PC_REQUIRES}")
# The image decoders' libraries are named directly too: the static closure
# of libheif's and libtiff's .pc files (x265, numa, lzma, deflate, ...) asks
# for archives Debian's -dev packages do not all install.
set(CS_PC_LIBS_PRIVATE -lwebpdemux -lwebp -ltiff -lopenjp2 -lheif)
# libarchive likewise (its .pc's static closure: nettle, acl, xml2, lz4...).
list(APPEND CS_PC_LIBS_PRIVATE -larchive)
# libtorch's libraries that libclipscore.so links (the CUDA ones if present).
get_filename_component(CS_TORCH_LIBDIR ${TORCH_LIBRARY} DIRECTORY)
if(NOT CS_TORCH_LIBDIR IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES)
  list(APPEND CS_PC_LIBS_PRIVATE "-L${CS_TORCH_LIBDIR}")
endif()
foreach(name torch torch_cpu torch_cuda c10 c10_cuda)
  if(EXISTS ${CS_TORCH_LIBDIR}/lib${name}.so)
    list(APPEND CS_PC_LIBS_PRIVATE -l${name})
  endif()
endforeach()
get_filename_component(CS_CSV_LIBDIR ${CSV_LIBRARY} DIRECTORY)
if(NOT CS_CSV_LIBDIR IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES)
  list(APPEND CS_PC_LIBS_PRIVATE "-L${CS_CSV_LIBDIR}")
endif()
list(APPEND CS_PC_LIBS_PRIVATE -lcsv)
if(CLIPSCORE_FETCH)
  foreach(name ${CURL_LIBRARIES})
    list(APPEND CS_PC_LIBS_PRIVATE -l${name})
  endforeach()
endif()
list(APPEND CS_PC_LIBS_PRIVATE -lstdc++ -lm -pthread)
list(JOIN CS_PC_LIBS_PRIVATE " " CS_PC_LIBS_PRIVATE)
configure_file(cmake/clipscore.pc.in clipscore.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/clipscore.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT Development)

install(FILES man/clipscore.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT Runtime)

# bash-completion loads completions/NAME on demand from its data folder.
install(FILES completion/clipscore.bash DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME clipscore COMPONENT Runtime)

# The README's links to models/README.md keep working from the doc folder.
install(FILES README.md LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT Runtime)
install(FILES models/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}/models COMPONENT Runtime)
install(DIRECTORY examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples COMPONENT Runtime)

# cpack -G DEB: clipscore_VERSION_ARCH.deb (Runtime) and
# libclipscore-dev_VERSION_ARCH.deb (Development), for /usr. The program's
# dependencies come from dpkg-shlibdeps (libtorch, libcurl, cairo, pango...),
# plus OpenBLAS, which libtorch only reaches through the libblas alternative
# (without it, the reference BLAS: about 35x slower).
set(CPACK_PACKAGE_NAME clipscore)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "CLIP similarity of image/caption pairs")
set(CPACK_PACKAGE_CONTACT "clipscore maintainers <clipscore@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_COMPONENTS_ALL Runtime Development)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME clipscore)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION "CLIP similarity of image/caption pairs: the command line and libclipscore")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
# The package's own libclipscore.so.N, for dpkg-shlibdeps to find (relative
# to the staging folder, where CPack runs it).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS usr/${CMAKE_INSTALL_LIBDIR})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "libopenblas0-pthread | libopenblas0")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_GENERATE_SHLIBS ON)
# The dev package: pkg-config --cflags needs the .pc files of Requires.private
# (their -dev packages); a static link also needs libtorch's, libcsv's and
# libcurl's libraries, which are only suggested (libtorch-dev is large).
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libclipscore-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEVELOPMENT_DESCRIPTION "CLIP similarity of image/caption pairs: C header, pkg-config file, static library")
set(CS_DEV_DEPENDS "clipscore (= ${PROJECT_VERSION})" "pkgconf | pkg-config" libcjson-dev libutf8proc-dev zlib1g-dev libssl-dev
    libwebp-dev libtiff-dev libopenjp2-7-dev libheif-dev libarchive-dev)
if(JPEG_FOUND)
  list(APPEND CS_DEV_DEPENDS libjpeg-dev)
endif()
if(CLIPSCORE_FIGURES)
  list(APPEND CS_DEV_DEPENDS libpango1.0-dev)
endif()
list(JOIN CS_DEV_DEPENDS ", " CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SUGGESTS "libtorch-dev, libcsv-dev, libcurl4-openssl-dev | libcurl-dev")
include(CPack)
