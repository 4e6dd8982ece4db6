/* SPDX-License-Identifier: MIT */
/*
 * error.c - coil_strerror and coil_err_name. The table is our own, so the
 * strings are static and the functions thread-safe (unlike strerror on
 * some C libraries). Codes the table lacks fall back to a fixed text.
 * The texts are the C library's, except where coil gives a code a wider
 * meaning: -ETIMEDOUT is a timeout scope's or wait_for's expiry as much
 * as TCP's ("Timed out", not "Connection timed out").
 */
#include <limits.h>

#include "internal.h"

#define COIL__ERRNO_TABLE(X) \
    X(EPERM, "Operation not permitted") \
    X(ENOENT, "No such file or directory") \
    X(ESRCH, "No such process") \
    X(EINTR, "Interrupted system call") \
    X(EIO, "Input/output error") \
    X(ENXIO, "No such device or address") \
    X(E2BIG, "Argument list too long") \
    X(ENOEXEC, "Exec format error") \
    X(EBADF, "Bad file descriptor") \
    X(ECHILD, "No child processes") \
    X(EAGAIN, "Resource temporarily unavailable") \
    X(ENOMEM, "Cannot allocate memory") \
    X(EACCES, "Permission denied") \
    X(EFAULT, "Bad address") \
    X(EBUSY, "Device or resource busy") \
    X(EEXIST, "File exists") \
    X(EXDEV, "Invalid cross-device link") \
    X(ENODEV, "No such device") \
    X(ENOTDIR, "Not a directory") \
    X(EISDIR, "Is a directory") \
    X(EINVAL, "Invalid argument") \
    X(ENFILE, "Too many open files in system") \
    X(EMFILE, "Too many open files") \
    X(ENOTTY, "Inappropriate ioctl for device") \
    X(ETXTBSY, "Text file busy") \
    X(EFBIG, "File too large") \
    X(ENOSPC, "No space left on device") \
    X(ESPIPE, "Illegal seek") \
    X(EROFS, "Read-only file system") \
    X(EMLINK, "Too many links") \
    X(EPIPE, "Broken pipe") \
    X(EDOM, "Numerical argument out of domain") \
    X(ERANGE, "Numerical result out of range") \
    X(EDEADLK, "Resource deadlock avoided") \
    X(ENAMETOOLONG, "File name too long") \
    X(ENOLCK, "No locks available") \
    X(ENOSYS, "Function not implemented") \
    X(ENOTEMPTY, "Directory not empty") \
    X(ELOOP, "Too many levels of symbolic links") \
    X(ENOMSG, "No message of desired type") \
    X(EIDRM, "Identifier removed") \
    X(ENOLINK, "Link has been severed") \
    X(EPROTO, "Protocol error") \
    X(EBADMSG, "Bad message") \
    X(EOVERFLOW, "Value too large for defined data type") \
    X(EILSEQ, "Invalid or incomplete multibyte or wide character") \
    X(ENOTSOCK, "Socket operation on non-socket") \
    X(EDESTADDRREQ, "Destination address required") \
    X(EMSGSIZE, "Message too long") \
    X(EPROTOTYPE, "Protocol wrong type for socket") \
    X(ENOPROTOOPT, "Protocol not available") \
    X(EPROTONOSUPPORT, "Protocol not supported") \
    X(ESOCKTNOSUPPORT, "Socket type not supported") \
    X(EOPNOTSUPP, "Operation not supported") \
    X(EPFNOSUPPORT, "Protocol family not supported") \
    X(EAFNOSUPPORT, "Address family not supported by protocol") \
    X(EADDRINUSE, "Address already in use") \
    X(EADDRNOTAVAIL, "Cannot assign requested address") \
    X(ENETDOWN, "Network is down") \
    X(ENETUNREACH, "Network is unreachable") \
    X(ENETRESET, "Network dropped connection on reset") \
    X(ECONNABORTED, "Software caused connection abort") \
    X(ECONNRESET, "Connection reset by peer") \
    X(ENOBUFS, "No buffer space available") \
    X(EISCONN, "Transport endpoint is already connected") \
    X(ENOTCONN, "Transport endpoint is not connected") \
    X(ESHUTDOWN, "Cannot send after transport endpoint shutdown") \
    X(ETOOMANYREFS, "Too many references: cannot splice") \
    X(ETIMEDOUT, "Timed out") \
    X(ECONNREFUSED, "Connection refused") \
    X(EHOSTDOWN, "Host is down") \
    X(EHOSTUNREACH, "No route to host") \
    X(EALREADY, "Operation already in progress") \
    X(EINPROGRESS, "Operation now in progress") \
    X(ESTALE, "Stale file handle") \
    X(EDQUOT, "Disk quota exceeded") \
    X(ECANCELED, "Operation canceled") \
    X(EOWNERDEAD, "Owner died") \
    X(ENOTRECOVERABLE, "State not recoverable")

const char *coil_err_name(int err)
{
    if (err == 0)
        return "OK";
    if (err == INT_MIN)
        return "EUNKNOWN";
    if (err < 0)
        err = -err;
    switch (err) {
#define X(code, text) \
    case code: \
        return #code;
        COIL__ERRNO_TABLE(X)
#undef X
    default:
        return "EUNKNOWN";
    }
}

const char *coil_strerror(int err)
{
    if (err == 0)
        return "Success";
    if (err == INT_MIN)
        return "Unknown error";
    if (err < 0)
        err = -err;
    switch (err) {
#define X(code, text) \
    case code: \
        return text;
        COIL__ERRNO_TABLE(X)
#undef X
    default:
        return "Unknown error";
    }
}
