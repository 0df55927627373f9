package org.blksnap.nbd;

import static org.blksnap.nbd.NbdHandshakeDescriptor.*;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_CAN_MULTI_CONN;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_HAS_FLAGS;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_READ_ONLY;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_SEND_CACHE;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_SEND_DF;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_SEND_FAST_ZERO;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_SEND_FLUSH;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_SEND_FUA;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_SEND_TRIM;
import static org.blksnap.nbd.NbdTransmissionDescriptor.FLAG_SEND_WRITE_ZEROES;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Option haggling of one connection (fixed newstyle): greeting, client flags, then options until
 * the client picks an export (GO, EXPORT_NAME), aborts or goes away. Runs on the connection's
 * reader thread. Every length from the client is bounded before anything is allocated.
 */
final class Handshake {
    private static final Logger LOG = LoggerFactory.getLogger(Handshake.class);

    /** A bad option: answered with an error reply, the connection stays in haggling. */
    private static final class OptionError extends Exception {
        final int replyType;

        OptionError(int replyType, String message) {
            super(message, null, false, false);
            this.replyType = replyType;
        }
    }

    /**
     * Thrown by the {@code entering} callback to turn the client away from an export it may not
     * enter now (too many connections to it): GO is answered NBD_REP_ERR_POLICY with the message
     * and haggling goes on; EXPORT_NAME, which has no error reply, hangs up.
     */
    static final class Refused extends RuntimeException {
        Refused(String message) {
            super(message, null, false, false);
        }
    }

    private final NbdInput in;
    private final ReplyWriter out;
    private final NbdChannel channel;
    private final NbdTls tls;
    private final ExportProvider provider;
    private final boolean forceReadOnly;
    private final BooleanSupplier shuttingDown;
    private final String peer;
    /** Told about the export before the client learns that transmission starts, so closeExport cannot miss it. */
    private final java.util.function.Consumer<Negotiated> entering;

    private boolean noZeroes;
    private boolean tlsOn;
    /** Who the client is, for access control; looked up when first needed and again after STARTTLS. */
    private NbdClient client;
    private boolean structuredReplies;
    /** Names selected by the last SET_META_CONTEXT, for {@link #selectedFor}; resolved again at GO. */
    private List<String> selectedContexts = List.of();
    private String selectedFor;

    Handshake(NbdInput in, ReplyWriter out, NbdChannel channel, NbdTls tls, ExportProvider provider,
              boolean forceReadOnly, BooleanSupplier shuttingDown, String peer,
              java.util.function.Consumer<Negotiated> entering) {
        this.in = in;
        this.out = out;
        this.channel = channel;
        this.tls = tls;
        this.provider = provider;
        this.forceReadOnly = forceReadOnly;
        this.shuttingDown = shuttingDown;
        this.peer = peer;
        this.entering = entering;
    }

    /**
     * Runs the handshake.
     *
     * @return the negotiated export, or null when the client aborted or the server shuts down
     * @throws NbdProtocolException when the client breaks the protocol (the caller disconnects)
     * @throws IOException          when the stream fails or ends
     */
    Negotiated run() throws IOException {
        out.raw(greeting());

        int clientFlags = in.readInt();
        if ((clientFlags & ~CLIENT_FLAGS_KNOWN) != 0) {
            throw new NbdProtocolException("unknown client flags 0x" + Integer.toHexString(clientFlags));
        }
        noZeroes = (clientFlags & CLIENT_FLAG_NO_ZEROES) != 0;

        for (int count = 0; ; count++) {
            if (count >= MAX_OPTIONS_PER_CONNECTION) {
                throw new NbdProtocolException("more than " + MAX_OPTIONS_PER_CONNECTION + " options");
            }
            ByteBuffer h = in.require(OPTION_HEADER_LENGTH);
            int p = h.position();
            long magic = h.getLong(p + OPTION_MAGIC_OFFSET);
            int option = h.getInt(p + OPTION_CODE_OFFSET);
            long length = Integer.toUnsignedLong(h.getInt(p + OPTION_LENGTH_OFFSET));
            h.position(p + OPTION_HEADER_LENGTH);
            if (magic != IHAVEOPT) {
                throw new NbdProtocolException("bad option magic 0x" + Long.toHexString(magic));
            }
            if (length > MAX_OPTION_BYTES) {
                if (option == OPT_EXPORT_NAME || length > MAX_SKIPPABLE_OPTION_BYTES) {
                    throw new NbdProtocolException(optionName(option) + " with " + length + " bytes of data (limit "
                            + MAX_OPTION_BYTES + ")");
                }
                in.skip(length);
                error(option, REP_ERR_TOO_BIG, optionName(option) + " data of " + length + " bytes exceeds the limit of "
                        + MAX_OPTION_BYTES);
                continue;
            }
            ByteBuffer data = in.readBytes((int) length);
            if (option == OPT_ABORT) {
                try {
                    out.optionReply(option, REP_ACK);
                } catch (IOException e) {
                    // The client may close without waiting for the ACK.
                }
                return null;
            }
            if (shuttingDown.getAsBoolean()) {
                if (option == OPT_EXPORT_NAME) {
                    return null;
                }
                error(option, REP_ERR_SHUTDOWN, "server is shutting down");
                continue;
            }
            if (tls.mode() == NbdTls.Mode.REQUIRE && !tlsOn && option != OPT_STARTTLS) {
                if (option == OPT_EXPORT_NAME) {
                    // No error reply exists for EXPORT_NAME: hang up, as nbdkit and qemu-nbd do.
                    throw new NbdProtocolException("EXPORT_NAME before STARTTLS, but this server requires TLS");
                }
                error(option, REP_ERR_TLS_REQD, "this server requires TLS: the client must send NBD_OPT_STARTTLS"
                        + " first (libnbd: an nbds:// or nbds+unix:// URI; qemu: --tls-creds)");
                continue;
            }
            try {
                Negotiated n = option(option, data);
                if (n != null) {
                    return n;
                }
            } catch (OptionError e) {
                error(option, e.replyType, e.getMessage());
            }
        }
    }

    /** The server's greeting: fixed newstyle, NO_ZEROES offered. */
    static ByteBuffer greeting() {
        ByteBuffer greeting = ByteBuffer.allocate(GREETING_LENGTH);
        greeting.putLong(GREETING_MAGIC_OFFSET, NBDMAGIC);
        greeting.putLong(GREETING_OPTS_MAGIC_OFFSET, IHAVEOPT);
        greeting.putShort(GREETING_FLAGS_OFFSET, (short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
        return greeting;
    }

    /** Handles one option; returns non-null when transmission starts. */
    private Negotiated option(int option, ByteBuffer data) throws IOException, OptionError {
        switch (option) {
            case OPT_EXPORT_NAME:
                return exportName(data);
            case OPT_LIST:
                list(data);
                return null;
            case OPT_INFO:
            case OPT_GO:
                return infoOrGo(option, data);
            case OPT_STRUCTURED_REPLY:
                if (data.hasRemaining()) {
                    throw new OptionError(REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
                }
                structuredReplies = true;
                out.optionReply(option, REP_ACK);
                return null;
            case OPT_LIST_META_CONTEXT:
            case OPT_SET_META_CONTEXT:
                metaContext(option, data);
                return null;
            case OPT_STARTTLS:
                startTls(data);
                return null;
            default:
                throw new OptionError(REP_ERR_UNSUP, optionName(option) + " is not supported");
        }
    }

    /**
     * STARTTLS: ACK, then the TLS handshake on the same stream. Everything negotiated before is
     * forgotten (structured replies, selected contexts), as the protocol asks.
     */
    private void startTls(ByteBuffer data) throws IOException, OptionError {
        if (tls.mode() == NbdTls.Mode.OFF) {
            throw new OptionError(REP_ERR_UNSUP, "STARTTLS is not supported: this server runs without TLS");
        }
        if (data.hasRemaining()) {
            throw new OptionError(REP_ERR_INVALID, "STARTTLS takes no data");
        }
        if (tlsOn) {
            throw new OptionError(REP_ERR_INVALID, "TLS is already on");
        }
        out.optionReply(OPT_STARTTLS, REP_ACK);
        channel.startTls(tls, in.takeBuffered());
        tlsOn = true;
        client = null;
        structuredReplies = false;
        selectedContexts = List.of();
        selectedFor = null;
        LOG.debug("{}: TLS on: {} ({})", peer, channel.tlsDescription(), client());
    }

    private NbdClient client() {
        if (client == null) {
            client = channel.client();
        }
        return client;
    }

    private Negotiated exportName(ByteBuffer data) throws IOException {
        if (data.remaining() > MAX_STRING_BYTES) {
            throw new NbdProtocolException("EXPORT_NAME of " + data.remaining() + " bytes");
        }
        String name;
        try {
            name = decode(data, data.remaining());
        } catch (OptionError e) {
            throw new NbdProtocolException("EXPORT_NAME: " + e.getMessage());
        }
        Export export;
        try {
            export = open(name);
        } catch (OptionError e) {
            // EXPORT_NAME has no error reply: all we can do is hang up.
            throw new NbdProtocolException("EXPORT_NAME " + quote(name) + ": " + e.getMessage());
        }
        Negotiated n;
        try {
            n = negotiated(export, List.of());
        } catch (RuntimeException e) {
            export.close();
            throw e;
        }
        ByteBuffer reply = ByteBuffer.allocate(EXPORT_NAME_REPLY_LENGTH + (noZeroes ? 0 : EXPORT_NAME_ZEROES_LENGTH));
        reply.putLong(EXPORT_NAME_SIZE_OFFSET, export.device().sizeBytes());
        reply.putShort(EXPORT_NAME_FLAGS_OFFSET, (short) n.transmissionFlags());
        try {
            entering.accept(n); // from here on the connection owns (and closes) the export
        } catch (RuntimeException e) {
            export.close();
            throw e;
        }
        out.raw(reply);
        return n;
    }

    private void list(ByteBuffer data) throws IOException, OptionError {
        if (data.hasRemaining()) {
            throw new OptionError(REP_ERR_INVALID, "LIST takes no data");
        }
        for (ExportInfo info : provider.list()) {
            if (!provider.allows(info.name(), client())) {
                continue;
            }
            byte[] name = info.name().getBytes(StandardCharsets.UTF_8);
            byte[] description = ReplyWriter.truncateUtf8(info.description(), MAX_STRING_BYTES);
            if (name.length > MAX_STRING_BYTES) {
                LOG.warn("export name {}... longer than {} bytes is not listed", info.name().substring(0, 32), MAX_STRING_BYTES);
                continue;
            }
            ByteBuffer len = ByteBuffer.allocate(Integer.BYTES).putInt(0, name.length);
            out.optionReply(OPT_LIST, REP_SERVER, len, ByteBuffer.wrap(name), ByteBuffer.wrap(description));
        }
        out.optionReply(OPT_LIST, REP_ACK);
    }

    private Negotiated infoOrGo(int option, ByteBuffer data) throws IOException, OptionError {
        String name = lengthPrefixedString(data, "export name");
        if (data.remaining() < Short.BYTES) {
            throw new OptionError(REP_ERR_INVALID, optionName(option) + " data ends before the number of info requests");
        }
        int n = Short.toUnsignedInt(data.getShort());
        if (data.remaining() != n * Short.BYTES) {
            throw new OptionError(REP_ERR_INVALID, optionName(option) + " announces " + n + " info requests but carries "
                    + data.remaining() + " bytes for them");
        }
        Set<Integer> wanted = new LinkedHashSet<>();
        for (int i = 0; i < n; i++) {
            wanted.add(Short.toUnsignedInt(data.getShort()));
        }
        Export export = open(name);
        boolean handedOver = false;
        try {
            List<MetaContext> contexts = List.of();
            if (option == OPT_GO) {
                contexts = resolveSelected(export);
            }
            Negotiated neg = negotiated(export, contexts);
            ByteBuffer info = ByteBuffer.allocate(INFO_EXPORT_LENGTH);
            info.putShort(INFO_TYPE_OFFSET, (short) INFO_EXPORT);
            info.putLong(INFO_EXPORT_SIZE_OFFSET, export.device().sizeBytes());
            info.putShort(INFO_EXPORT_FLAGS_OFFSET, (short) neg.transmissionFlags());
            out.optionReply(option, REP_INFO, info);
            if (wanted.contains(INFO_NAME)) {
                textInfo(option, INFO_NAME, export.name());
            }
            if (wanted.contains(INFO_DESCRIPTION) && !export.description().isEmpty()) {
                textInfo(option, INFO_DESCRIPTION, export.description());
            }
            ByteBuffer bs = ByteBuffer.allocate(INFO_BLOCK_SIZE_LENGTH);
            bs.putShort(INFO_TYPE_OFFSET, (short) INFO_BLOCK_SIZE);
            bs.putInt(INFO_BLOCK_SIZE_MINIMUM_OFFSET, neg.sizes().minimumBytes());
            bs.putInt(INFO_BLOCK_SIZE_PREFERRED_OFFSET, neg.sizes().preferredBytes());
            bs.putInt(INFO_BLOCK_SIZE_MAXIMUM_OFFSET, neg.sizes().maximumBytes());
            out.optionReply(option, REP_INFO, bs);
            if (option == OPT_GO) {
                try {
                    entering.accept(neg);
                } catch (Refused e) {
                    throw new OptionError(REP_ERR_POLICY, e.getMessage());
                }
                handedOver = true;
                out.optionReply(option, REP_ACK);
                return neg;
            }
            out.optionReply(option, REP_ACK);
            return null;
        } finally {
            if (!handedOver) {
                export.close();
            }
        }
    }

    private void textInfo(int option, int type, String text) throws IOException {
        ByteBuffer t = ByteBuffer.allocate(INFO_TEXT_OFFSET);
        t.putShort(INFO_TYPE_OFFSET, (short) type);
        out.optionReply(option, REP_INFO, t, ByteBuffer.wrap(ReplyWriter.truncateUtf8(text, MAX_STRING_BYTES)));
    }

    private void metaContext(int option, ByteBuffer data) throws IOException, OptionError {
        boolean set = option == OPT_SET_META_CONTEXT;
        if (set && !structuredReplies) {
            throw new OptionError(REP_ERR_INVALID, "SET_META_CONTEXT needs STRUCTURED_REPLY first");
        }
        String name = lengthPrefixedString(data, "export name");
        if (data.remaining() < Integer.BYTES) {
            throw new OptionError(REP_ERR_INVALID, optionName(option) + " data ends before the number of queries");
        }
        long queryCount = Integer.toUnsignedLong(data.getInt());
        List<String> queries = new ArrayList<>();
        for (long i = 0; i < queryCount; i++) {
            queries.add(lengthPrefixedString(data, "query " + i));
        }
        if (data.hasRemaining()) {
            throw new OptionError(REP_ERR_INVALID, optionName(option) + " has " + data.remaining() + " bytes after its queries");
        }
        try (Export export = open(name)) {
            if (set) {
                List<String> selected = new ArrayList<>();
                for (String q : queries) {
                    if (selected.contains(q)) {
                        continue;
                    }
                    if (q.equals(BaseAllocationContext.NAME)
                            || (!q.startsWith(BaseAllocationContext.NAMESPACE) && export.resolveMetaContext(q) != null)) {
                        selected.add(q);
                    }
                }
                for (int id = 0; id < selected.size(); id++) {
                    contextReply(option, id, selected.get(id));
                }
                selectedContexts = List.copyOf(selected);
                selectedFor = export.name();
            } else {
                Set<String> names = new LinkedHashSet<>();
                if (queries.isEmpty()) {
                    names.add(BaseAllocationContext.NAME);
                    names.addAll(export.listMetaContexts(""));
                }
                for (String q : queries) {
                    if (q.startsWith(BaseAllocationContext.NAMESPACE)) {
                        if (q.equals(BaseAllocationContext.NAMESPACE) || q.equals(BaseAllocationContext.NAME)) {
                            names.add(BaseAllocationContext.NAME);
                        }
                    } else if (!q.isEmpty()) {
                        names.addAll(export.listMetaContexts(q));
                    }
                }
                for (String n : names) {
                    contextReply(option, 0, n);
                }
            }
        }
        out.optionReply(option, REP_ACK);
    }

    private void contextReply(int option, int id, String name) throws IOException {
        byte[] bytes = name.getBytes(StandardCharsets.UTF_8);
        if (bytes.length > MAX_STRING_BYTES) {
            return;
        }
        ByteBuffer head = ByteBuffer.allocate(META_CONTEXT_NAME_OFFSET).putInt(META_CONTEXT_ID_OFFSET, id);
        out.optionReply(option, REP_META_CONTEXT, head, ByteBuffer.wrap(bytes));
    }

    /** The contexts selected by SET_META_CONTEXT for this export, resolved on the export being entered. */
    private List<MetaContext> resolveSelected(Export export) {
        if (!structuredReplies || selectedFor == null || !selectedFor.equals(export.name())) {
            return List.of();
        }
        List<MetaContext> contexts = new ArrayList<>(selectedContexts.size());
        for (String name : selectedContexts) {
            MetaContext c = name.equals(BaseAllocationContext.NAME)
                    ? new BaseAllocationContext(export.device()) : export.resolveMetaContext(name);
            contexts.add(c != null ? c : new VanishedContext(name));
        }
        return List.copyOf(contexts);
    }

    private Negotiated negotiated(Export export, List<MetaContext> contexts) {
        boolean readOnly = forceReadOnly || export.readOnly();
        int flags = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_CACHE;
        flags |= readOnly ? FLAG_READ_ONLY : FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO;
        if (structuredReplies) {
            flags |= FLAG_SEND_DF;
        }
        if (export.multiConn()) {
            flags |= FLAG_CAN_MULTI_CONN;
        }
        return new Negotiated(export, flags, structuredReplies, contexts, BlockSizes.of(export));
    }

    private Export open(String requested) throws OptionError {
        String name = requested;
        if (name.isEmpty()) {
            String def = provider.defaultExportName();
            if (def == null) {
                throw new OptionError(REP_ERR_UNKNOWN, "there is no default export; give an export name");
            }
            name = def;
        }
        if (!provider.allows(name, client())) {
            LOG.debug("{}: export {} is not for {}", peer, quote(name), client());
            // The very answer a missing export gets, so the client cannot tell that it exists.
            throw new OptionError(REP_ERR_UNKNOWN, requested.isEmpty()
                    ? "there is no default export; give an export name" : "no export named " + quote(name));
        }
        Export export;
        try {
            export = provider.open(name);
        } catch (RuntimeException e) {
            LOG.info("{}: opening export {} failed", peer, quote(name), e);
            throw new OptionError(REP_ERR_UNKNOWN, "export " + quote(name) + " cannot be opened: " + e.getMessage());
        }
        if (export == null) {
            throw new OptionError(REP_ERR_UNKNOWN, "no export named " + quote(name));
        }
        return export;
    }

    private String lengthPrefixedString(ByteBuffer data, String what) throws OptionError {
        if (data.remaining() < Integer.BYTES) {
            throw new OptionError(REP_ERR_INVALID, "option data ends before the length of the " + what);
        }
        long length = Integer.toUnsignedLong(data.getInt());
        if (length > MAX_STRING_BYTES) {
            throw new OptionError(REP_ERR_TOO_BIG, what + " of " + length + " bytes exceeds " + MAX_STRING_BYTES);
        }
        if (length > data.remaining()) {
            throw new OptionError(REP_ERR_INVALID, what + " of " + length + " bytes runs past the option data ("
                    + data.remaining() + " bytes left)");
        }
        return decode(data, (int) length);
    }

    private static String decode(ByteBuffer data, int length) throws OptionError {
        ByteBuffer slice = data.slice(data.position(), length);
        data.position(data.position() + length);
        try {
            String s = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(slice).toString();
            if (s.indexOf('\0') >= 0) {
                throw new OptionError(REP_ERR_INVALID, "string contains a NUL character");
            }
            return s;
        } catch (CharacterCodingException e) {
            throw new OptionError(REP_ERR_INVALID, "string is not valid UTF-8");
        }
    }

    private void error(int option, int replyType, String message) throws IOException {
        LOG.debug("{}: {} refused: {}", peer, optionName(option), message);
        out.optionReply(option, replyType, ByteBuffer.wrap(ReplyWriter.truncateUtf8(message, MAX_STRING_BYTES)));
    }

    private static String quote(String name) {
        return "'" + name + "'";
    }

    /** A context selected by SET_META_CONTEXT that the export no longer offers at GO: BLOCK_STATUS fails with EIO. */
    private record VanishedContext(String name) implements MetaContext {
        @Override
        public void extents(long offsetBytes, long lengthBytes, StatusSink sink) throws IOException {
            throw new IOException("metadata context " + name + " is no longer offered by the export");
        }
    }
}
