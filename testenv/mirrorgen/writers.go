package mirrorgen

import (
	"bufio"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Discard is a Writer that drops every frame.
type Discard struct{}

// WriteFrames implements Writer.
func (Discard) WriteFrames([][]byte) error { return nil }

// FileFormat selects the capture file format.
type FileFormat int

const (
	FormatPcap   FileFormat = iota // classic pcap, nanosecond timestamps
	FormatPcapNG                   // pcapng
)

// FileWriter writes whole outer frames to a capture file (LinkTypeEthernet),
// stamped with the generator's schedule. Call Flush when done.
type FileWriter struct {
	buf *bufio.Writer
	pc  *pcapgo.Writer
	ng  *pcapgo.NgWriter
	// SnapLen, when positive, records at most SnapLen bytes of each frame
	// (capture length < wire length), as tcpdump -s does.
	SnapLen int
}

// NewFileWriter writes the file header to w and returns the writer.
func NewFileWriter(w io.Writer, format FileFormat) (*FileWriter, error) {
	fw := &FileWriter{buf: bufio.NewWriterSize(w, 1<<20)}
	switch format {
	case FormatPcap:
		fw.pc = pcapgo.NewWriterNanos(fw.buf)
		if err := fw.pc.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
			return nil, fmt.Errorf("mirrorgen: pcap header: %w", err)
		}
	case FormatPcapNG:
		ng, err := pcapgo.NewNgWriter(fw.buf, layers.LinkTypeEthernet)
		if err != nil {
			return nil, fmt.Errorf("mirrorgen: pcapng header: %w", err)
		}
		fw.ng = ng
	default:
		return nil, fmt.Errorf("mirrorgen: unknown file format %d", format)
	}
	return fw, nil
}

// WriteFrames implements Writer, stamping frames with the current time.
func (fw *FileWriter) WriteFrames(frames [][]byte) error {
	now := time.Now()
	for _, f := range frames {
		if err := fw.write(f, now); err != nil {
			return err
		}
	}
	return nil
}

// WriteFramesAt implements TimedWriter.
func (fw *FileWriter) WriteFramesAt(frames [][]byte, ts []time.Time) error {
	for i, f := range frames {
		if err := fw.write(f, ts[i]); err != nil {
			return err
		}
	}
	return nil
}

func (fw *FileWriter) write(f []byte, ts time.Time) error {
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f)}
	if fw.SnapLen > 0 && len(f) > fw.SnapLen {
		ci.CaptureLength = fw.SnapLen
		f = f[:fw.SnapLen]
	}
	var err error
	if fw.pc != nil {
		err = fw.pc.WritePacket(ci, f)
	} else {
		err = fw.ng.WritePacket(ci, f)
	}
	if err != nil {
		return fmt.Errorf("mirrorgen: write capture record: %w", err)
	}
	return nil
}

// Flush writes buffered records to the underlying writer.
func (fw *FileWriter) Flush() error {
	if fw.ng != nil {
		if err := fw.ng.Flush(); err != nil {
			return fmt.Errorf("mirrorgen: flush pcapng: %w", err)
		}
	}
	if err := fw.buf.Flush(); err != nil {
		return fmt.Errorf("mirrorgen: flush capture: %w", err)
	}
	return nil
}
