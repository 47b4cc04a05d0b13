package ingest

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/binwatch/binwatch/schema/binwatchv1"
)

// FuzzDecode feeds arbitrary bytes to Decode. Decode must not panic, and a
// batch that it accepts must be accepted again, unchanged, after a protobuf
// round trip.
func FuzzDecode(f *testing.F) {
	valid := marshal(f, validBatch())
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	for _, i := range []int{0, 1, 7, len(valid) / 3, len(valid) - 1} {
		flipped := append([]byte(nil), valid...)
		flipped[i] ^= 0x5a
		f.Add(flipped)
	}
	f.Add(append(append([]byte(nil), valid...), valid...))
	f.Add(marshal(f, &binwatchv1.IntegrityAlert{Id: "x", Host: &binwatchv1.AlertHost{Id: testHost}}))
	f.Add(marshal(f, validBatch().Stats))
	f.Add(marshal(f, timestamppb.New(testNow)))
	f.Add([]byte{})
	f.Add([]byte(`{"host_id":"web-01"}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var raw binwatchv1.ProcessBatch
		if proto.Unmarshal(data, &raw) == nil && hasUnknown(&raw) != hasUnknownReflect(raw.ProtoReflect()) {
			t.Fatalf("hasUnknown = %v, reflective walk = %v", hasUnknown(&raw), hasUnknownReflect(raw.ProtoReflect()))
		}
		b, err := decodeAt(testSubject, testHeader, data, testNow)
		if err != nil {
			if b != nil {
				t.Fatalf("decode returned a batch with error %v", err)
			}
			if Reason(err) == ReasonOther {
				t.Fatalf("decode error %v has no reason label", err)
			}
			return
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
		if err != nil {
			t.Fatalf("marshal accepted batch: %v", err)
		}
		b2, err := decodeAt(testSubject, testHeader, again, testNow)
		if err != nil {
			t.Fatalf("accepted batch rejected after a round trip: %v", err)
		}
		if !proto.Equal(b, b2) {
			t.Fatalf("round trip changed the batch: %v, want %v", b2, b)
		}
	})
}

// FuzzDecodeBatch feeds arbitrary bytes to DecodeBatch. It must not
// panic. A batch that it accepts must pass strict decoding after a
// protobuf round trip, it must keep the other records unchanged and in
// order, and each record that it removed must fail validation alone.
func FuzzDecodeBatch(f *testing.F) {
	valid := marshal(f, validBatch())
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	for _, i := range []int{0, 9, len(valid) / 2, len(valid) - 3} {
		flipped := append([]byte(nil), valid...)
		flipped[i] ^= 0x5a
		f.Add(flipped)
	}
	mixed := validBatch()
	mixed.Records[1].Pid = -3
	mixed.Records[3].Executable.Running.Sha256 = "x"
	f.Add(marshal(f, mixed))
	f.Add(marshal(f, &binwatchv1.IntegrityAlert{Id: "x", Host: &binwatchv1.AlertHost{Id: testHost}}))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := decodeBatchAt(testSubject, testHeader, data, testNow)
		strict, strictErr := decodeAt(testSubject, testHeader, data, testNow)
		if err != nil {
			if res.Batch != nil || res.Rejected != nil {
				t.Fatalf("DecodeBatch returned %+v with error %v", res, err)
			}
			if Reason(err) == ReasonOther {
				t.Fatalf("DecodeBatch error %v has no reason label", err)
			}
			if strictErr == nil {
				t.Fatalf("Decode accepted a batch that DecodeBatch rejected with %v", err)
			}
			return
		}
		if (len(res.Rejected) == 0) != (strictErr == nil) {
			t.Fatalf("DecodeBatch rejected %d records, but Decode returned %v", len(res.Rejected), strictErr)
		}
		if strictErr == nil && !proto.Equal(strict, res.Batch) {
			t.Fatalf("Decode = %v, DecodeBatch = %v, want equal batches", strict, res.Batch)
		}

		var raw binwatchv1.ProcessBatch
		if err := proto.Unmarshal(data, &raw); err != nil {
			t.Fatalf("DecodeBatch accepted bytes that do not unmarshal: %v", err)
		}
		if got, want := len(res.Batch.Records)+len(res.Rejected), len(raw.Records); got != want {
			t.Fatalf("DecodeBatch kept and rejected %d records, want %d", got, want)
		}
		removed := map[int]bool{}
		for i, re := range res.Rejected {
			if re.Index < 0 || re.Index >= len(raw.Records) || i > 0 && re.Index <= res.Rejected[i-1].Index {
				t.Fatalf("Rejected[%d].Index = %d, out of order or range", i, re.Index)
			}
			removed[re.Index] = true
			r := raw.Records[re.Index]
			if re.PID != r.GetPid() {
				t.Fatalf("Rejected[%d].PID = %d, want %d", i, re.PID, r.GetPid())
			}
			if Reason(re.Err) == ReasonOther {
				t.Fatalf("Rejected[%d].Err = %v has no reason label", i, re.Err)
			}
			alone := proto.Clone(res.Batch).(*binwatchv1.ProcessBatch)
			alone.Records = []*binwatchv1.ProcessRecord{r}
			if err := validateAt(alone, testHost, testNow); Reason(err) != Reason(re.Err) {
				t.Fatalf("rejected record alone in the batch: %v, want reason %q like %v", err, Reason(re.Err), re.Err)
			}
		}
		k := 0
		for i, r := range raw.Records {
			if removed[i] {
				continue
			}
			if !proto.Equal(res.Batch.Records[k], r) {
				t.Fatalf("kept record %d = %v, want record %d of the message: %v", k, res.Batch.Records[k], i, r)
			}
			k++
		}

		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(res.Batch)
		if err != nil {
			t.Fatalf("marshal accepted batch: %v", err)
		}
		b2, err := decodeAt(testSubject, testHeader, again, testNow)
		if err != nil {
			t.Fatalf("accepted batch rejected after a round trip: %v", err)
		}
		if !proto.Equal(res.Batch, b2) {
			t.Fatalf("round trip changed the batch: %v, want %v", b2, res.Batch)
		}
	})
}

// BenchmarkDecode measures decoding and validating a 2000-record batch.
func BenchmarkDecode(b *testing.B) {
	batch := validBatch()
	records := batch.Records
	batch.Records = nil
	for i := range 2000 {
		r := proto.Clone(records[i%len(records)]).(*binwatchv1.ProcessRecord)
		r.Pid = int32(i + 1)
		batch.Records = append(batch.Records, r)
	}
	data := marshal(b, batch)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeAt(testSubject, testHeader, data, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
