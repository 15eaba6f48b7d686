/*
 * authpen.c - the shared authentication penalty table (the rule, the
 * file format and the invariants are in authpen.h).
 */
#include "lib/authpen.h"
#include "lib/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xalloc.h"

#define AUTHPEN_MAGIC "CASTORAP"
#define AUTHPEN_VERSION 1u

struct authpen_hdr {
	char magic[8];
	uint32_t version;
	uint32_t nslots;
	uint64_t salt;
	uint8_t pad[40];
};

struct authpen_slot {
	uint64_t key;        /* salted hash of kind + name; 0 = free */
	uint32_t failures;   /* attempts counted (see authpen.h), after decay */
	uint32_t pad;
	int64_t last_ms;     /* last attempt (or decay reference), wall clock */
	int64_t turn_ms;     /* time of the last turn handed out */
};

_Static_assert(sizeof(struct authpen_hdr) == 64, "header is 64 bytes");
_Static_assert(sizeof(struct authpen_slot) == 32, "slot is 32 bytes");

#define AUTHPEN_SIZE (sizeof(struct authpen_hdr) + AUTHPEN_SLOTS * sizeof(struct authpen_slot))

struct authpen {
	int fd;
	char *path;
	struct authpen_hdr *hdr;
	struct authpen_slot *slots;
	int64_t max_ms, decay_ms;
};

static int
authpen_lock(int fd, short type)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	while (fcntl(fd, F_OFD_SETLKW, &fl) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

/* Lock held: make the file a valid empty table if it is not one. */
static int
authpen_check(int fd, const char *path, struct err *err)
{
	struct authpen_hdr h;
	struct stat sb;

	if (fstat(fd, &sb) < 0)
		return err_errno(err, ERR_TEMP, "stat %s", path);
	if ((size_t)sb.st_size == AUTHPEN_SIZE && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
	    memcmp(h.magic, AUTHPEN_MAGIC, 8) == 0 && h.version == AUTHPEN_VERSION &&
	    h.nslots == AUTHPEN_SLOTS)
		return 0;
	if (sb.st_size != 0)
		log_warn("authentication penalty table damaged, rebuilt empty path=%s size=%lld",
			log_q(path), (long long)sb.st_size);
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, AUTHPEN_MAGIC, 8);
	h.version = AUTHPEN_VERSION;
	h.nslots = AUTHPEN_SLOTS;
	if (getrandom(&h.salt, sizeof(h.salt), 0) != (ssize_t)sizeof(h.salt))
		h.salt = (uint64_t)(int64_t)clock_wall_ms() ^ ((uint64_t)getpid() << 32);
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)AUTHPEN_SIZE) < 0 ||
	    pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return err_errno(err, ERR_TEMP, "rebuild %s", path);
	return 0;
}

struct authpen *
authpen_open(const char *path, int64_t max_ms, int64_t decay_ms, struct err *err)
{
	struct authpen *p;
	void *map;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0) {
		err_errno(err, ERR_TEMP, "open %s", path);
		return NULL;
	}
	if (authpen_lock(fd, F_WRLCK) < 0) {
		err_errno(err, ERR_TEMP, "lock %s", path);
		close(fd);
		return NULL;
	}
	if (authpen_check(fd, path, err) < 0) {
		close(fd);
		return NULL;
	}
	authpen_lock(fd, F_UNLCK);
	map = mmap(NULL, AUTHPEN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		err_errno(err, ERR_TEMP, "mmap %s", path);
		close(fd);
		return NULL;
	}
	p = xcalloc(1, sizeof(*p));
	p->fd = fd;
	p->path = xstrdup(path);
	p->hdr = map;
	p->slots = (struct authpen_slot *)((char *)map + sizeof(struct authpen_hdr));
	p->max_ms = max_ms;
	p->decay_ms = decay_ms;
	return p;
}

void
authpen_close(struct authpen **pp)
{
	struct authpen *p = *pp;

	if (p == NULL)
		return;
	munmap(p->hdr, AUTHPEN_SIZE);
	close(p->fd);
	free(p->path);
	free(p);
	*pp = NULL;
}

int64_t
authpen_gap_ms(unsigned n, int64_t max_ms)
{
	int64_t g;

	if (n < 2)
		return 0;
	if (n - 2 >= 30)
		return max_ms;
	g = (int64_t)AUTHPEN_GAP_BASE_MS << (n - 2);
	return g > max_ms ? max_ms : g;
}

/* FNV-1a over the salt, the kind and the name; never 0. */
static uint64_t
authpen_key(const struct authpen *p, char kind, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull, salt = p->hdr->salt;

	for (int i = 0; i < 8; i++) {
		h ^= (salt >> (8 * i)) & 0xff;
		h *= 0x100000001b3ull;
	}
	h ^= (unsigned char)kind;
	h *= 0x100000001b3ull;
	for (const unsigned char *s = (const unsigned char *)name; *s; s++) {
		h ^= *s;
		h *= 0x100000001b3ull;
	}
	return h == 0 ? 1 : h;
}

/* Lock held: the key's slot with its count decayed and its times sane;
 * NULL when absent and !create.  A new key takes a free slot of its
 * bucket, or the one used least recently. */
static struct authpen_slot *
authpen_slot(struct authpen *p, char kind, const char *name, int64_t now, bool create)
{
	uint64_t key = authpen_key(p, kind, name);
	struct authpen_slot *b = &p->slots[(key % (AUTHPEN_SLOTS / AUTHPEN_WAYS)) * AUTHPEN_WAYS];
	struct authpen_slot *s = NULL, *victim = &b[0];

	for (int i = 0; i < AUTHPEN_WAYS && s == NULL; i++) {
		if (b[i].key == key)
			s = &b[i];
		else if (victim->key != 0 && (b[i].key == 0 || b[i].last_ms < victim->last_ms))
			victim = &b[i];
	}
	if (s == NULL) {
		if (!create)
			return NULL;
		s = victim;
		memset(s, 0, sizeof(*s));
		s->key = key;
		s->last_ms = now;
	}
	if (s->last_ms > now)                    /* the clock went back */
		s->last_ms = now;
	if (s->turn_ms > now + 2 * p->max_ms)
		s->turn_ms = now;
	if (s->failures > 0 && p->decay_ms > 0 && now - s->last_ms >= p->decay_ms) {
		int64_t periods = (now - s->last_ms) / p->decay_ms;
		s->failures = periods >= 32 ? 0 : s->failures >> periods;
		s->last_ms += periods * p->decay_ms;
	}
	return s;
}

/* Lock held: when this key's next turn comes. */
static int64_t
authpen_next(const struct authpen *p, const struct authpen_slot *s, int64_t now)
{
	int64_t next;

	if (s == NULL || s->turn_ms == 0)
		return now;
	next = s->turn_ms + authpen_gap_ms(s->failures, p->max_ms);
	return next > now ? next : now;
}

int
authpen_begin(struct authpen *p, const char *user, const char *addr, struct authpen_turn *t,
	struct err *err)
{
	struct authpen_slot *su = NULL, *sa = NULL;
	int64_t now = (int64_t)clock_wall_ms(), turn, na;

	memset(t, 0, sizeof(*t));
	if (authpen_lock(p->fd, F_WRLCK) < 0)
		return err_errno(err, ERR_TEMP, "lock %s", p->path);
	if (authpen_check(p->fd, p->path, err) < 0) {
		authpen_lock(p->fd, F_UNLCK);
		return -1;
	}
	if (user != NULL)
		su = authpen_slot(p, 'u', user, now, true);
	if (addr != NULL)
		sa = authpen_slot(p, 'a', addr, now, true);
	turn = authpen_next(p, su, now);
	na = authpen_next(p, sa, now);
	if (na > turn)
		turn = na;
	t->failures = su != NULL ? su->failures + 1 : 0;
	if (sa != NULL && sa->failures + 1 > t->failures)
		t->failures = sa->failures + 1;
	t->wait_ms = turn - now;
	if (turn - now > p->max_ms) {
		t->throttled = true;
	} else {
		struct authpen_slot *both[2] = { su, sa };
		for (int i = 0; i < 2; i++) {
			if (both[i] == NULL)
				continue;
			both[i]->failures++;
			both[i]->last_ms = now;
			both[i]->turn_ms = turn;
		}
	}
	authpen_lock(p->fd, F_UNLCK);
	return 0;
}

void
authpen_end(struct authpen *p, const char *user, const char *addr, bool ok)
{
	struct authpen_slot *s;
	int64_t now = (int64_t)clock_wall_ms();

	if (!ok || authpen_lock(p->fd, F_WRLCK) < 0)
		return;          /* a failure was counted when it began */
	if (authpen_check(p->fd, p->path, NULL) == 0) {
		if (user != NULL && (s = authpen_slot(p, 'u', user, now, false)) != NULL &&
		    s->failures > 0)
			s->failures--;
		if (addr != NULL && (s = authpen_slot(p, 'a', addr, now, false)) != NULL) {
			s->failures = 0;
			s->turn_ms = 0;
		}
	}
	authpen_lock(p->fd, F_UNLCK);
}

void
authpen_note(struct authpen *p, const char *addr)
{
	struct authpen_slot *s;
	int64_t now = (int64_t)clock_wall_ms();

	if (addr == NULL || authpen_lock(p->fd, F_WRLCK) < 0)
		return;
	if (authpen_check(p->fd, p->path, NULL) == 0 &&
	    (s = authpen_slot(p, 'a', addr, now, true)) != NULL) {
		s->failures++;
		s->last_ms = now;
	}
	authpen_lock(p->fd, F_UNLCK);
}

void
authpen_peer_addr(const char *peer, char *out, size_t size)
{
	const char *end;

	if (peer[0] == '[' && (end = strchr(peer, ']')) != NULL) {
		peer++;
	} else {
		end = strrchr(peer, ':');
		if (end == NULL || strchr(peer, ':') != end)
			end = peer + strlen(peer);
	}
	if ((size_t)(end - peer) >= size)
		end = peer + size - 1;
	memcpy(out, peer, (size_t)(end - peer));
	out[end - peer] = '\0';
}
