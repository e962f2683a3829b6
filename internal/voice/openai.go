package voice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/agentd/agentd/internal/config"
)

// Defaults of the OpenAI audio API.
const (
	defaultSTTModel = "whisper-1"
	defaultTTSModel = "tts-1"
	defaultTTSVoice = "alloy"
	defaultBaseURL  = "https://api.openai.com/v1"
)

// openAISTT and openAITTS talk to any OpenAI-compatible audio API through
// the official SDK (retries off: a failed transcription is reported, not
// silently repeated for minutes).
type openAISTT struct {
	c     openai.Client
	model string
	base  string
}

type openAITTS struct {
	c     openai.Client
	model string
	voice string
	base  string
}

func newClient(baseURL, key string, timeout time.Duration) (openai.Client, string) {
	if baseURL == "" {
		baseURL = defaultBaseURL
	}
	if key == "" {
		key = "none" // local servers take any key; the SDK wants one
	}
	return openai.NewClient(
		option.WithBaseURL(baseURL),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(timeout),
	), baseURL
}

func newOpenAISTT(c config.VoiceSTT, timeout time.Duration) *openAISTT {
	cl, base := newClient(c.BaseURL, c.APIKey, timeout)
	return &openAISTT{c: cl, model: firstNonEmpty(c.Model, defaultSTTModel), base: base}
}

func newOpenAITTS(c config.VoiceTTS, timeout time.Duration) *openAITTS {
	cl, base := newClient(c.BaseURL, c.APIKey, timeout)
	return &openAITTS{c: cl, model: firstNonEmpty(c.Model, defaultTTSModel), voice: firstNonEmpty(c.Voice, defaultTTSVoice), base: base}
}

// Transcribe posts the audio as multipart (file, model, language).
func (o *openAISTT) Transcribe(ctx context.Context, audio io.Reader, lang string) (Transcript, error) {
	p := openai.AudioTranscriptionNewParams{
		File:           openai.File(audio, "audio", "application/octet-stream"),
		Model:          openai.AudioModel(o.model),
		ResponseFormat: openai.AudioResponseFormatVerboseJSON,
	}
	if lang != "" {
		p.Language = openai.String(lang)
	}
	res, err := o.c.Audio.Transcriptions.New(ctx, p)
	if err != nil {
		return Transcript{}, apiError("transcribe", o.base, err)
	}
	return Transcript{Text: strings.TrimSpace(res.Text), Language: firstNonEmpty(res.Language, lang), Duration: res.Duration}, nil
}

// Health is a cheap reachability check: the models list (servers that lack
// it answer 404, which still proves they are there).
func (o *openAISTT) Health(ctx context.Context) error { return reach(ctx, o.c, o.base) }

// Health checks the server answers.
func (o *openAITTS) Health(ctx context.Context) error { return reach(ctx, o.c, o.base) }

func reach(ctx context.Context, c openai.Client, base string) error {
	_, err := c.Models.List(ctx)
	var ae *openai.Error
	if err == nil || (errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound) {
		return nil
	}
	return apiError("reach", base, err)
}

// Synthesize asks /audio/speech for format (Opus in Ogg for "ogg").
func (o *openAITTS) Synthesize(ctx context.Context, text, voice, format string) (Audio, error) {
	if strings.TrimSpace(text) == "" {
		return Audio{}, fmt.Errorf("%w: nothing to say", ErrEmpty)
	}
	rf := map[string]openai.AudioSpeechNewParamsResponseFormat{
		"ogg": openai.AudioSpeechNewParamsResponseFormatOpus,
		"mp3": openai.AudioSpeechNewParamsResponseFormatMP3,
		"wav": openai.AudioSpeechNewParamsResponseFormatWAV,
		"":    openai.AudioSpeechNewParamsResponseFormatOpus,
	}[format]
	if rf == "" {
		return Audio{}, fmt.Errorf("unknown audio format %q (want ogg, mp3 or wav)", format)
	}
	if format == "" {
		format = "ogg"
	}
	res, err := o.c.Audio.Speech.New(ctx, openai.AudioSpeechNewParams{
		Input:          text,
		Model:          openai.SpeechModel(o.model),
		Voice:          openai.AudioSpeechNewParamsVoiceUnion{OfString: openai.String(firstNonEmpty(voice, o.voice))},
		ResponseFormat: rf,
	})
	if err != nil {
		return Audio{}, apiError("synthesize", o.base, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return Audio{}, fmt.Errorf("synthesize at %s: read audio: %w", o.base, err)
	}
	if len(data) == 0 {
		return Audio{}, fmt.Errorf("synthesize at %s: empty audio", o.base)
	}
	rate := 24000
	if format == "ogg" {
		rate = 48000
	}
	return Audio{Data: data, Format: format, SampleRate: rate}, nil
}

// apiError names the server and keeps the API's own message.
func apiError(op, base string, err error) error {
	var ae *openai.Error
	if errors.As(err, &ae) {
		return fmt.Errorf("%s at %s: %d %s", op, base, ae.StatusCode, firstNonEmpty(ae.Message, http.StatusText(ae.StatusCode)))
	}
	return fmt.Errorf("%s at %s: %w", op, base, err)
}
