package voice

import (
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuChildren is the CPU time the finished subprocesses (espeak-ng,
// pocketsphinx, ffmpeg) used so far.
func cpuChildren() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLocalSTT reports the local recogniser's real-time factor:
// seconds of audio transcribed per CPU second (above 1: faster than the
// audio plays), beside the clip's own duration.
func BenchmarkLocalSTT(b *testing.B) {
	needLocal(b)
	s := testService(b, nil)
	ctx := context.Background()
	clip, err := s.Synthesize(ctx, strings.Repeat("the quick brown fox jumps over the lazy dog. ", 3), "", "ogg")
	if err != nil {
		b.Fatal(err)
	}
	var audio float64
	cpu0 := cpuChildren()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr, err := s.Transcribe(ctx, bytes.NewReader(clip.Data), "")
		if err != nil {
			b.Fatal(err)
		}
		audio += tr.Duration
	}
	cpu := (cpuChildren() - cpu0).Seconds()
	b.ReportMetric(audio/float64(b.N), "audio-s/op")
	b.ReportMetric(audio/cpu, "x-realtime-cpu")
	b.ReportMetric(audio/b.Elapsed().Seconds(), "x-realtime-wall")
}

// BenchmarkLocalTTS reports synthesis time per 100 characters against the
// duration of the audio it makes.
func BenchmarkLocalTTS(b *testing.B) {
	needLocal(b)
	s := testService(b, nil)
	text := strings.Repeat("the quick brown fox jumps over the lazy dog. ", 5)[:200]
	ctx := context.Background()
	clip, err := s.Synthesize(ctx, text, "", "wav")
	if err != nil {
		b.Fatal(err)
	}
	audioSec := float64(len(clip.Data)-44) / float64(2*clip.SampleRate)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Synthesize(ctx, text, "", "ogg"); err != nil {
			b.Fatal(err)
		}
	}
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(perOp*1000/2, "ms-per-100-chars")
	b.ReportMetric(audioSec*1000/2, "audio-ms-per-100-chars")
	b.ReportMetric(audioSec/perOp, "x-realtime")
}
