package whatsapptest

import (
	"time"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"
)

// DM is a direct text message from phone, sent at ts.
func DM(id, phone, text string, ts time.Time) *events.Message {
	from := types.NewJID(phone, types.DefaultUserServer)
	return &events.Message{
		Info: types.MessageInfo{
			MessageSource: types.MessageSource{Chat: from, Sender: from},
			ID:            id, Timestamp: ts, PushName: "User " + phone, Type: "text",
		},
		Message: &waE2E.Message{Conversation: proto.String(text)},
	}
}

// GroupText is a group message from sender (a JID) with mentions (JID
// strings) in its ContextInfo; replyTo, when set, is the participant
// whose message it quotes.
func GroupText(id, group string, sender types.JID, text string, ts time.Time, replyTo string, mentions ...string) *events.Message {
	g := types.NewJID(group, types.GroupServer)
	ci := &waE2E.ContextInfo{MentionedJID: mentions}
	if replyTo != "" {
		ci.StanzaID = proto.String("QUOTED1")
		ci.Participant = proto.String(replyTo)
	}
	return &events.Message{
		Info: types.MessageInfo{
			MessageSource: types.MessageSource{Chat: g, Sender: sender, IsGroup: true},
			ID:            id, Timestamp: ts, Type: "text",
		},
		Message: &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String(text), ContextInfo: ci}},
	}
}

// VoiceNote is a PTT voice note from phone whose media is at directPath.
func VoiceNote(id, phone, directPath string, size int, ts time.Time) *events.Message {
	m := DM(id, phone, "", ts)
	m.Info.Type = "media"
	m.Message = &waE2E.Message{AudioMessage: &waE2E.AudioMessage{
		URL: proto.String("https://mmg.whatsapp.net" + directPath), DirectPath: proto.String(directPath),
		Mimetype: proto.String("audio/ogg; codecs=opus"), PTT: proto.Bool(true),
		FileLength: proto.Uint64(uint64(size)), Seconds: proto.Uint32(2), MediaKey: []byte("key"),
	}}
	return m
}

// Image is an image with a caption from phone.
func Image(id, phone, directPath, caption string, size int, ts time.Time) *events.Message {
	m := DM(id, phone, "", ts)
	m.Info.Type = "media"
	m.Message = &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
		URL: proto.String("https://mmg.whatsapp.net" + directPath), DirectPath: proto.String(directPath),
		Mimetype: proto.String("image/jpeg"), Caption: proto.String(caption),
		FileLength: proto.Uint64(uint64(size)), MediaKey: []byte("key"),
	}}
	return m
}
