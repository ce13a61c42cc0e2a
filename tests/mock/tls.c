/* SPDX-License-Identifier: MIT
 *
 * tls.c - the mock's optional TLS transport (--tls-cert/--tls-key): one
 * process-wide OpenSSL server context and a session per connection, with
 * recv()/send()-shaped calls so the event loop keeps one code path for both
 * transports. The handshake runs implicitly inside the first reads.
 * It does not ask for client certificates, speak ALPN/HTTP/2, or reload the
 * certificate: a benchmark and test fixture, not a TLS terminator.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mock.h"

struct mock_tls {
    SSL *ssl;
    bool want_write; /* the last call waits for the socket to become writable */
};

static SSL_CTX *g_ctx;

static void err_text(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char why[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, why, sizeof(why));
    snprintf(err, errlen, "%s %s: %s", what, file ? file : "", why);
    ERR_clear_error();
}

bool mock_tls_init(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        err_text(err, errlen, "cannot create the TLS context", NULL);
        return false;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Partial writes and a moving buffer: the loop retries from wherever its
     * output has got to, like send(). Idle connections give their buffers
     * back (thousands of held streams in the benchmark). */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* A client that closes without close_notify is an ordinary EOF here. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Sessions resume (TLS 1.3 tickets, TLS 1.2 ids), as a provider's do:
     * nginx's proxy_ssl_session_reuse and curl's session cache rely on it. */
    static const unsigned char sid_ctx[] = "mock_upstream";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        err_text(err, errlen, "cannot load the certificate chain", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        err_text(err, errlen, "cannot load the private key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        err_text(err, errlen, "the key does not match the certificate", key_file);
        goto fail;
    }
    g_ctx = ctx;
    return true;
fail:
    SSL_CTX_free(ctx);
    return false;
}

bool mock_tls_on(void)
{
    return g_ctx != NULL;
}

void mock_tls_cleanup(void)
{
    SSL_CTX_free(g_ctx);
    g_ctx = NULL;
}

struct mock_tls *mock_tls_new(int fd)
{
    struct mock_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ssl = SSL_new(g_ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(t->ssl);
    return t;
}

/* Maps a failed SSL_read_ex/SSL_write_ex to the recv()/send() convention. */
static ssize_t io_fail(struct mock_tls *t, int ret, bool reading)
{
    int e = SSL_get_error(t->ssl, ret);
    int sys = errno;
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        t->want_write = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN: /* close_notify */
        if (reading)
            return 0;
        errno = EPIPE;
        return -1;
    case SSL_ERROR_SYSCALL:
        errno = sys ? sys : (reading ? 0 : EPIPE);
        return reading && !sys ? 0 : -1;
    default: /* a protocol error: a plain-HTTP client, a bad handshake */
        errno = ECONNRESET;
        return -1;
    }
}

ssize_t mock_tls_recv(struct mock_tls *t, void *buf, size_t n)
{
    size_t got = 0;
    t->want_write = false;
    ERR_clear_error();
    int ret = SSL_read_ex(t->ssl, buf, n, &got);
    if (ret == 1)
        return (ssize_t)got;
    return io_fail(t, ret, true);
}

ssize_t mock_tls_send(struct mock_tls *t, const void *buf, size_t n)
{
    size_t put = 0;
    t->want_write = false;
    ERR_clear_error();
    int ret = SSL_write_ex(t->ssl, buf, n, &put);
    if (ret == 1)
        return (ssize_t)put;
    return io_fail(t, ret, false);
}

bool mock_tls_wants_write(const struct mock_tls *t)
{
    return t->want_write;
}

bool mock_tls_pending(const struct mock_tls *t)
{
    return SSL_pending(t->ssl) > 0;
}

void mock_tls_shutdown(struct mock_tls *t)
{
    /* One close_notify, best effort; the peer's is not waited for. */
    if (SSL_is_init_finished(t->ssl))
        SSL_shutdown(t->ssl);
    ERR_clear_error();
}

void mock_tls_free(struct mock_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}
