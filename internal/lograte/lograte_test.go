package lograte

import (
	"testing"
	"time"
)

func TestLimiterAllowsOncePerInterval(t *testing.T) {
	l := New(time.Hour)
	if !l.Allow("a") {
		t.Fatal("first Allow(a) = false, want true")
	}
	if l.Allow("a") {
		t.Fatal("second Allow(a) within the interval = true, want false")
	}
	if !l.Allow("b") {
		t.Fatal("Allow(b) = false, want true: keys are independent")
	}
}

func TestLimiterAllowsAfterInterval(t *testing.T) {
	l := New(time.Millisecond)
	l.Allow("a")
	deadline := time.Now().Add(time.Second)
	for !l.Allow("a") {
		if time.Now().After(deadline) {
			t.Fatal("Allow(a) still false a second after a 1ms interval")
		}
		time.Sleep(time.Millisecond)
	}
}
