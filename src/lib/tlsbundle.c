/*
 * tlsbundle.c - server certificates and keys read into memory, and
 * passed from castord to its children in a sealed memfd (see
 * tlsbundle.h for the layout).
 */
#include "lib/tlsbundle.h"
#include "lib/atomicfile.h"
#include "lib/buf.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define TLSBUNDLE_MAGIC "castor-tls-bundle 1\n"
#define TLSBUNDLE_PEM_MAX (1024u * 1024)   /* one certificate chain or key file */

static struct tlsbundle_pair *
tlsbundle_add(struct tlsbundle *b)
{
	b->pairs = xreallocarray(b->pairs, b->n + 1, sizeof(*b->pairs));
	memset(&b->pairs[b->n], 0, sizeof(b->pairs[0]));
	return &b->pairs[b->n++];
}

/* Read one pair from its two files. */
static int
tlsbundle_read_pair(struct tlsbundle *b, const char *name, const char *cert, const char *key,
	struct err *err)
{
	struct tlsbundle_pair *p = tlsbundle_add(b);

	p->name = xstrdup(name);
	str_lower(p->name);
	p->cert_path = xstrdup(cert);
	p->key_path = xstrdup(key);
	if (atomicfile_read_all(cert, TLSBUNDLE_PEM_MAX, &p->cert, &p->cert_len, err) < 0) {
		err_prefix(err, "TLS certificate");
		return -1;
	}
	if (atomicfile_read_all(key, TLSBUNDLE_PEM_MAX, &p->key, &p->key_len, err) < 0) {
		err_prefix(err, "TLS key");
		return -1;
	}
	return 0;
}

/* A file name in the SNI directory that names a host: NAME.pem. */
static bool
tlsbundle_sni_name(const char *f, size_t *namelen_r)
{
	size_t n = strlen(f);

	if (n <= 4 || n > 4 + 253 || !str_has_suffix(f, ".pem") || f[0] == '.')
		return false;
	for (size_t i = 0; i < n - 4; i++) {
		char c = f[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return false;
	}
	*namelen_r = n - 4;
	return true;
}

static int
tlsbundle_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tlsbundle_pair *)a)->name, ((const struct tlsbundle_pair *)b)->name);
}

static int
tlsbundle_read_sni(struct tlsbundle *b, const char *dir, struct err *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct buf cert = BUF_INIT, key = BUF_INIT;
	size_t nlen;
	int rc = 0;

	if (d == NULL)
		return err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_PERM, "TLS SNI directory %s", dir);
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char name[256];

		if (!tlsbundle_sni_name(de->d_name, &nlen))
			continue;
		str_lcpy(name, de->d_name, nlen + 1);
		buf_reset(&cert);
		buf_reset(&key);
		buf_printf(&cert, "%s/%s", dir, de->d_name);
		buf_printf(&key, "%s/%s.key", dir, name);
		rc = tlsbundle_read_pair(b, name, buf_cstr(&cert),
		    access(buf_cstr(&key), F_OK) == 0 ? buf_cstr(&key) : buf_cstr(&cert), err);
	}
	closedir(d);
	buf_free(&cert);
	buf_free(&key);
	if (rc == 0 && b->n > 2)
		qsort(b->pairs + 1, b->n - 1, sizeof(*b->pairs), tlsbundle_cmp);
	return rc;
}

struct tlsbundle *
tlsbundle_read(const struct tls_server_conf *tc, struct err *err)
{
	struct tlsbundle *b = xcalloc(1, sizeof(*b));

	if (tc->cert_file == NULL || *tc->cert_file == '\0' || tc->key_file == NULL || *tc->key_file == '\0') {
		err_set(err, ERR_INVALID, "TLS certificate and key files must be set");
		tlsbundle_free(&b);
		return NULL;
	}
	if (tlsbundle_read_pair(b, "", tc->cert_file, tc->key_file, err) < 0 ||
	    (tc->sni_dir != NULL && *tc->sni_dir != '\0' && tlsbundle_read_sni(b, tc->sni_dir, err) < 0)) {
		tlsbundle_free(&b);
		return NULL;
	}
	return b;
}

void
tlsbundle_conf(const struct conf *conf, struct tls_server_conf *tc)
{
	memset(tc, 0, sizeof(*tc));
	tc->cert_file = conf_get_path(conf, "tls_cert_file", "tls/cert.pem");
	tc->key_file = conf_get_path(conf, "tls_key_file", "tls/key.pem");
	tc->sni_dir = conf_get_path(conf, "tls_sni_dir", NULL);
	tc->min_version = conf_get_str(conf, "tls_min_version", NULL);
	tc->ciphers = conf_get_str(conf, "tls_ciphers", NULL);
	tc->ciphersuites = conf_get_str(conf, "tls_ciphersuites", NULL);
}

void
tlsbundle_conf_clear(struct tls_server_conf *tc)
{
	free((char *)tc->cert_file);
	free((char *)tc->key_file);
	free((char *)tc->sni_dir);
	memset(tc, 0, sizeof(*tc));
}

int
tlsbundle_memfd(const struct tlsbundle *b, struct err *err)
{
	struct buf out = BUF_INIT;
	int fd;

	buf_puts(&out, TLSBUNDLE_MAGIC);
	for (size_t i = 0; i < b->n; i++) {
		const struct tlsbundle_pair *p = &b->pairs[i];

		buf_printf(&out, "pair %zu %zu %zu %zu %zu\n", strlen(p->name), strlen(p->cert_path),
		    strlen(p->key_path), p->cert_len, p->key_len);
		buf_puts(&out, p->name);
		buf_puts(&out, p->cert_path);
		buf_puts(&out, p->key_path);
		buf_append(&out, p->cert, p->cert_len);
		buf_append(&out, p->key, p->key_len);
	}
	buf_puts(&out, "end\n");
	fd = memfd_create("castor-tls", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || atomicfile_write_all(fd, out.data, out.len) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		err_errno(err, ERR_TEMP, "TLS bundle memfd");
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	explicit_bzero(out.data, out.len);
	buf_free(&out);
	return fd;
}

/* Take len bytes at *pos of data (size n) as a new string. */
static char *
tlsbundle_take(const char *data, size_t n, size_t *pos, size_t len)
{
	char *s;

	if (len > n - *pos)
		return NULL;
	s = xmalloc(len + 1);
	memcpy(s, data + *pos, len);
	s[len] = '\0';
	*pos += len;
	return s;
}

/* "pair A B C D E": five lengths, each at most TLSBUNDLE_MAX. */
static int
tlsbundle_pair_line(char *line, size_t len[5])
{
	char *p, *save = NULL;
	int i = 0;

	if (!str_has_prefix(line, "pair "))
		return -1;
	for (p = strtok_r(line + 5, " ", &save); p != NULL; p = strtok_r(NULL, " ", &save)) {
		uint64_t v;

		if (i == 5 || str_to_u64(p, &v) < 0 || v > TLSBUNDLE_MAX)
			return -1;
		len[i++] = (size_t)v;
	}
	return i == 5 ? 0 : -1;
}

static int
tlsbundle_parse(struct tlsbundle *b, const char *data, size_t n, struct err *err)
{
	size_t pos = strlen(TLSBUNDLE_MAGIC);

	if (n < pos || memcmp(data, TLSBUNDLE_MAGIC, pos) != 0)
		return err_set(err, ERR_CORRUPT, "TLS bundle: bad header");
	for (;;) {
		const char *nl = memchr(data + pos, '\n', n - pos);
		size_t len[5];
		char line[128];
		struct tlsbundle_pair *p;

		if (nl == NULL || (size_t)(nl - (data + pos)) >= sizeof(line))
			return err_set(err, ERR_CORRUPT, "TLS bundle: truncated");
		/* not str_lcpy: it measures the whole source, which has no NUL */
		memcpy(line, data + pos, (size_t)(nl - (data + pos)));
		line[nl - (data + pos)] = '\0';
		pos = (size_t)(nl - data) + 1;
		if (str_eq(line, "end"))
			return b->n > 0 && pos == n ? 0 : err_set(err, ERR_CORRUPT, "TLS bundle: bad end");
		if (tlsbundle_pair_line(line, len) < 0)
			return err_set(err, ERR_CORRUPT, "TLS bundle: bad record");
		p = tlsbundle_add(b);
		if ((p->name = tlsbundle_take(data, n, &pos, len[0])) == NULL ||
		    (p->cert_path = tlsbundle_take(data, n, &pos, len[1])) == NULL ||
		    (p->key_path = tlsbundle_take(data, n, &pos, len[2])) == NULL ||
		    (p->cert = tlsbundle_take(data, n, &pos, len[3])) == NULL ||
		    (p->key = tlsbundle_take(data, n, &pos, len[4])) == NULL)
			return err_set(err, ERR_CORRUPT, "TLS bundle: truncated record");
		p->cert_len = len[3];
		p->key_len = len[4];
	}
}

struct tlsbundle *
tlsbundle_from_fd(int fd, struct err *err)
{
	struct tlsbundle *b = xcalloc(1, sizeof(*b));
	struct stat st;
	char *data = NULL;
	size_t n = 0;
	int rc = -1;

	if (fstat(fd, &st) < 0) {
		err_errno(err, ERR_TEMP, "TLS bundle fd %d", fd);
		goto out;
	}
	if (st.st_size <= 0 || (uint64_t)st.st_size > TLSBUNDLE_MAX) {
		err_set(err, ERR_CORRUPT, "TLS bundle fd %d: size %lld", fd, (long long)st.st_size);
		goto out;
	}
	data = xmalloc((size_t)st.st_size);
	while (n < (size_t)st.st_size) {
		ssize_t r = pread(fd, data + n, (size_t)st.st_size - n, (off_t)n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err_errno(err, ERR_TEMP, "TLS bundle fd %d: read", fd);
			goto out;
		}
		n += (size_t)r;
	}
	rc = tlsbundle_parse(b, data, n, err);
out:
	if (data != NULL) {
		explicit_bzero(data, n);
		free(data);
	}
	if (rc < 0)
		tlsbundle_free(&b);
	return b;
}

void
tlsbundle_free(struct tlsbundle **b)
{
	if (b == NULL || *b == NULL)
		return;
	for (size_t i = 0; i < (*b)->n; i++) {
		struct tlsbundle_pair *p = &(*b)->pairs[i];

		if (p->key != NULL)
			explicit_bzero(p->key, p->key_len);
		free(p->key);
		free(p->cert);
		free(p->name);
		free(p->cert_path);
		free(p->key_path);
	}
	free((*b)->pairs);
	free(*b);
	*b = NULL;
}
