package exe

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// identity is the cache key of a file's content: a file keeps its device
// and inode when rewritten in place, but its size, mtime or ctime change.
// ctime cannot be set from user space, so restoring the mtime does not
// hide a rewrite.
type identity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

func identityOf(st *unix.Stat_t) identity {
	return identity{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}
}

// digests is the cached outcome of hashing one file. A non-zero reason
// gives the cause of a missing digest.
type digests struct {
	sha256 string
	ssdeep string
	reason binwatchv1.CoverageReason
	detail string
}

// fill copies the digests into h.
func (d digests) fill(h *binwatchv1.FileHash) {
	h.Sha256 = d.sha256
	h.Ssdeep = d.ssdeep
}

// digestsFor returns the digests of r, whose fstat is st, from the cache
// or by reading it, and counts the work in res.
func (in *Inspector) digestsFor(r io.Reader, st *unix.Stat_t, res *Result) digests {
	id := identityOf(st)
	in.mu.Lock()
	d, ok := in.cache.get(id)
	in.mu.Unlock()
	if ok {
		res.CacheHits++
		return d
	}
	res.CacheMisses++
	d, cacheable := in.hash(r, st.Size, res)
	if cacheable {
		in.mu.Lock()
		in.cache.put(id, d)
		in.mu.Unlock()
	}
	return d
}

// hash reads r, whose fstat size is size bytes, and feeds SHA-256 and
// ssdeep from the same buffers. It reports whether the outcome depends only
// on the file's identity and may be cached: a file too large to read, or
// one that ssdeep cannot digest, fails the same way every time, while a
// read error may be transient.
func (in *Inspector) hash(r io.Reader, size int64, res *Result) (digests, bool) {
	if size > in.maxFileSize {
		return digests{
			reason: binwatchv1.CoverageReason_COVERAGE_REASON_TOO_LARGE,
			detail: fmt.Sprintf("file is %d bytes, larger than the limit of %d bytes", size, in.maxFileSize),
		}, true
	}
	res.Hashed++
	sha := sha256.New()
	var fuzzy fuzzyHasher
	if size <= in.maxFuzzyInput {
		fuzzy = in.newFuzzy()
	}

	buf := in.bufs.Get().(*[readBufferSize]byte)
	defer in.bufs.Put(buf)
	// Reading one byte past the size detects a file that grew.
	lr := io.LimitReader(r, size+1)
	var n int64
	for {
		m, err := lr.Read(buf[:])
		if m > 0 {
			sha.Write(buf[:m])
			if fuzzy != nil {
				fuzzy.Write(buf[:m])
			}
			n += int64(m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			res.BytesHashed += n
			return digests{
				reason: binwatchv1.CoverageReason_COVERAGE_REASON_READ_ERROR,
				detail: fmt.Sprintf("reading after %d of %d bytes: %v", n, size, err),
			}, false
		}
	}
	res.BytesHashed += n
	if n != size {
		return digests{
			reason: binwatchv1.CoverageReason_COVERAGE_REASON_READ_ERROR,
			detail: fmt.Sprintf("read %d bytes, but fstat reports %d", n, size),
		}, false
	}

	d := digests{sha256: hex.EncodeToString(sha.Sum(nil))}
	if fuzzy == nil {
		d.reason = binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED
		d.detail = fmt.Sprintf("file is %d bytes, larger than ssdeep's maximum input of %d bytes", size, in.maxFuzzyInput)
		return d, true
	}
	digest, err := fuzzy.Digest()
	if err != nil {
		d.reason = binwatchv1.CoverageReason_COVERAGE_REASON_SSDEEP_FAILED
		d.detail = fmt.Sprintf("ssdeep: %v", err)
		return d, true
	}
	d.ssdeep = digest
	return d, true
}

// lru is a digest cache bounded to max entries that evicts the least
// recently used. It is not locked; Inspector.mu guards it.
type lru struct {
	max   int
	order *list.List // front is most recently used; values are *lruEntry
	items map[identity]*list.Element
}

type lruEntry struct {
	id identity
	d  digests
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: make(map[identity]*list.Element)}
}

func (c *lru) get(id identity) (digests, bool) {
	e, ok := c.items[id]
	if !ok {
		return digests{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry).d, true
}

func (c *lru) put(id identity, d digests) {
	if e, ok := c.items[id]; ok {
		e.Value.(*lruEntry).d = d
		c.order.MoveToFront(e)
		return
	}
	c.items[id] = c.order.PushFront(&lruEntry{id: id, d: d})
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*lruEntry).id)
	}
}

func (c *lru) len() int { return c.order.Len() }
