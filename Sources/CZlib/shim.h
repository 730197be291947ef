// zlib for Core: gzopen/gzread (IDX files, gzip or plain) and crc32 (data set fingerprint).
#include <zlib.h>
