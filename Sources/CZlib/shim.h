// zlib: inflate for deflated .npz members, crc32 for the ones SkelLab writes.
#include <zlib.h>
