package tds

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// packetType is the first byte of a TDS packet header (MS-TDS 2.2.3.1.1).
type packetType byte

const (
	packetSQLBatch  packetType = 1
	packetRPC       packetType = 3
	packetReply     packetType = 4
	packetAttention packetType = 6
	packetBulkLoad  packetType = 7
	packetFedAuth   packetType = 8
	packetTransMgr  packetType = 14
	packetLogin7    packetType = 16
	packetSSPI      packetType = 17
	packetPrelogin  packetType = 18
)

func (t packetType) valid() bool {
	switch t {
	case packetSQLBatch, packetRPC, packetAttention, packetBulkLoad, packetFedAuth,
		packetTransMgr, packetLogin7, packetSSPI, packetPrelogin:
		return true
	}
	return false
}

// String names the packet type for error messages.
func (t packetType) String() string {
	switch t {
	case packetSQLBatch:
		return "SQL batch"
	case packetRPC:
		return "RPC"
	case packetReply:
		return "reply"
	case packetAttention:
		return "attention"
	case packetBulkLoad:
		return "bulk load"
	case packetFedAuth:
		return "federated authentication token"
	case packetTransMgr:
		return "transaction manager request"
	case packetLogin7:
		return "LOGIN7"
	case packetSSPI:
		return "SSPI"
	case packetPrelogin:
		return "PRELOGIN"
	}
	return fmt.Sprintf("packet type 0x%02X", byte(t))
}

// Packet header status bits (MS-TDS 2.2.3.1.2).
const (
	statusEOM                     = 0x01
	statusIgnore                  = 0x02
	statusResetConnection         = 0x08
	statusResetConnectionSkipTran = 0x10
)

const (
	headerSize = 8
	// DefaultMaxMessageSize caps a client message (all its packets joined)
	// when Config.MaxMessageSize is zero.
	DefaultMaxMessageSize = 64 << 20
	// DefaultPacketSize is used when LOGIN7 asks for the server default.
	DefaultPacketSize = 4096
	minPacketSize     = 512
	maxPacketSize     = 32767
)

// message is one client message: the payloads of its packets joined.
type message struct {
	typ    packetType
	status byte // OR of the status bytes of every packet
	data   []byte
}

// messageReader reads client messages packet by packet. Memory is bounded
// by max: a message may not grow beyond it, and each packet adds at most
// 65527 bytes, so a lying header cannot make it allocate more.
type messageReader struct {
	r   io.Reader
	max int
	// started, if set, runs after the first header of a message arrived;
	// the connection uses it to arm a read deadline for the rest.
	started func()
	hdr     [headerSize]byte
}

// read returns the next complete message (up to and including the packet
// with EOM). Any malformed header or short read is an error; the caller
// must then close the connection, as the stream is out of sync.
func (m *messageReader) read() (message, error) {
	var msg message
	for first := true; ; first = false {
		if _, err := io.ReadFull(m.r, m.hdr[:]); err != nil {
			if !first && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return message{}, err
		}
		typ := packetType(m.hdr[0])
		status := m.hdr[1]
		length := int(binary.BigEndian.Uint16(m.hdr[2:4]))
		if length < headerSize {
			return message{}, fmt.Errorf("%w: packet length %d is shorter than the header", ErrProtocol, length)
		}
		if !typ.valid() {
			return message{}, fmt.Errorf("%w: unexpected %v from client", ErrProtocol, typ)
		}
		if first {
			msg.typ = typ
			if m.started != nil {
				m.started()
			}
		} else if typ != msg.typ {
			return message{}, fmt.Errorf("%w: %v packet inside a %v message", ErrProtocol, typ, msg.typ)
		}
		payload := length - headerSize
		if len(msg.data)+payload > m.max {
			return message{}, fmt.Errorf("%w: %v message exceeds %d bytes", ErrMessageTooLarge, msg.typ, m.max)
		}
		n := len(msg.data)
		msg.data = slices.Grow(msg.data, payload)[:n+payload]
		if _, err := io.ReadFull(m.r, msg.data[n:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return message{}, err
		}
		msg.status |= status
		if status&statusEOM != 0 {
			return msg, nil
		}
	}
}

// packetWriter splits server messages into reply packets.
type packetWriter struct {
	w    io.Writer
	spid uint16
	size int    // negotiated packet size, header included
	pkt  []byte // scratch buffer of size bytes
	seq  byte   // packet number of the next packet of the current message
	// before, if set, runs before each packet write (arms a write deadline).
	before func()
}

func newPacketWriter(w io.Writer, spid uint16, size int) *packetWriter {
	return &packetWriter{w: w, spid: spid, size: size, pkt: make([]byte, size), seq: 1}
}

func (p *packetWriter) payload() int { return p.size - headerSize }

func (p *packetWriter) resize(size int) {
	p.size = size
	if cap(p.pkt) < size {
		p.pkt = make([]byte, size)
	}
	p.pkt = p.pkt[:size]
}

// write sends data as reply packets. Packets are full except possibly the
// last one. When eom is set the last packet ends the message and the
// packet sequence restarts for the next message. write with no data and eom
// unset sends nothing.
func (p *packetWriter) write(data []byte, eom bool) error {
	max := p.payload()
	for {
		n := min(len(data), max)
		last := n == len(data)
		if n == 0 && !(last && eom) {
			return nil
		}
		status := byte(0)
		if last && eom {
			status = statusEOM
		}
		h := p.pkt[:headerSize]
		h[0] = byte(packetReply)
		h[1] = status
		binary.BigEndian.PutUint16(h[2:4], uint16(headerSize+n))
		binary.BigEndian.PutUint16(h[4:6], p.spid)
		h[6] = p.seq
		h[7] = 0
		copy(p.pkt[headerSize:], data[:n])
		if p.before != nil {
			p.before()
		}
		if _, err := p.w.Write(p.pkt[:headerSize+n]); err != nil {
			return err
		}
		p.seq++
		data = data[n:]
		if last {
			if eom {
				p.seq = 1
			}
			return nil
		}
	}
}
