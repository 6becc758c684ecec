#pragma once
/**
 * @file config.hpp How the core is built: compiled into wsgate::wsgate, or header-only.
 *
 * Define `WSGATE_HEADER_ONLY` (the wsgate::header_only CMake target does) and every core header
 * brings its definitions from `wsgate/impl/<name>-inl.hpp`, marked `inline`; without it those
 * definitions are compiled once into the wsgate::wsgate library. A program uses one of the two,
 * never both: the library and the inline copies would define the same functions twice.
 */

#ifdef WSGATE_HEADER_ONLY
#define WSGATE_INLINE inline
#else
#define WSGATE_INLINE
#endif
