package org.blksnap.nbd;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.Pipe;

/** An {@link NbdChannel} over two pipes, so protocol tests run the real server without sockets. */
final class PipeChannel implements NbdChannel {
    private final Pipe.SourceChannel in;
    private final Pipe.SinkChannel out;

    PipeChannel(Pipe.SourceChannel in, Pipe.SinkChannel out) {
        this.in = in;
        this.out = out;
    }

    /** Starts a server connection over fresh pipes and returns the client end. */
    static NbdTestClient connect(NbdServer server) throws IOException {
        Pipe toServer = Pipe.open();
        Pipe toClient = Pipe.open();
        server.serve(new PipeChannel(toServer.source(), toClient.sink()));
        return new NbdTestClient(toClient.source(), toServer.sink(), () -> {
            toServer.sink().close();
            toClient.source().close();
        });
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
        return in.read(dst);
    }

    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
        return out.write(srcs, offset, length);
    }

    @Override
    public void shutdownInput() {
        try {
            in.close();
        } catch (IOException e) {
            // best effort
        }
    }

    @Override
    public String describe() {
        return "pipe";
    }

    @Override
    public void close() throws IOException {
        try {
            in.close();
        } finally {
            out.close();
        }
    }
}
