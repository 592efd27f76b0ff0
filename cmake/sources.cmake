# sources.cmake - the source files of the small libraries that parse
# untrusted input, named once for the main build (CMakeLists.txt) and the
# standalone fuzz build (tests/fuzz/CMakeLists.txt), so that a new parser
# file is fuzzed as soon as it is built. Paths are relative to src/.
set(CS_SOURCES_UTIL util.c tensor.c sha256.c npy.c)
set(CS_SOURCES_TEXT text_clean.c html_entities.c mojibake.c mojibake_tables.c tokenizer.c)
set(CS_SOURCES_IMAGE image.c decode_budget.c stb_image_impl.c image_webp.c image_tiff.c
    image_jp2.c image_ico.c image_heif.c image_psd.c
    image_bmp.c image_pnm.c image_gif.c)
set(CS_SOURCES_CSV csv_io.c)
set(CS_SOURCES_SAFETENSORS safetensors.c)
set(CS_SOURCES_MODEL_CONFIG model_config.c)
set(CS_SOURCES_WDS webdataset.c)

# The Debian libraries the image decoders use (pkg-config names).
macro(cs_find_image_libraries)
  pkg_check_modules(WEBP REQUIRED IMPORTED_TARGET libwebp libwebpdemux)
  pkg_check_modules(TIFF REQUIRED IMPORTED_TARGET libtiff-4)
  pkg_check_modules(OPENJP2 REQUIRED IMPORTED_TARGET libopenjp2)
  pkg_check_modules(HEIF REQUIRED IMPORTED_TARGET libheif)
  set(CS_IMAGE_LIBRARIES PkgConfig::WEBP PkgConfig::TIFF PkgConfig::OPENJP2 PkgConfig::HEIF
                         ZLIB::ZLIB)
endmacro()

# libarchive, which reads webdataset tars (webdataset.c).
macro(cs_find_archive_library)
  pkg_check_modules(LIBARCHIVE REQUIRED IMPORTED_TARGET libarchive)
endmacro()

# "src/x.c" for each name of a list.
function(cs_src out)
  set(r)
  foreach(f IN LISTS ARGN)
    list(APPEND r ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/../src/${f})
  endforeach()
  set(${out} ${r} PARENT_SCOPE)
endfunction()
