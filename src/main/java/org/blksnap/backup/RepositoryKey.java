package org.blksnap.backup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import javax.crypto.Cipher;
import javax.crypto.KDF;
import javax.crypto.Mac;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.HKDFParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * The key of an encrypted repository ({@link CryptoDescriptor}), loaded from its key file: names
 * blobs with a keyed hash, seals and opens blob payloads and manifests with AES-256-GCM. The
 * master key is used only to derive the working keys and is not kept; no method prints a key
 * ({@link #toString} names the file).
 *
 * <p>Thread-safe: {@link Cipher} and {@link Mac} instances are pooled (at most one per thread
 * using them at a time: the writer and reader threads are short-lived virtual threads, where a
 * thread-local would be one provider lookup per blob).
 */
public final class RepositoryKey {
    /** The environment variable naming the key file when {@code --key-file} is not given. */
    public static final String KEY_FILE_ENV = "BLKSNAP_KEY_FILE";

    private static final SecureRandom RANDOM = new SecureRandom();

    private final Path file;
    private final SecretKeySpec namesKey;
    private final byte[] dataKey;
    private final byte[] checkKey;
    private final ConcurrentLinkedQueue<Mac> nameMacs = new ConcurrentLinkedQueue<>();
    private final ConcurrentLinkedQueue<Cipher> ciphers = new ConcurrentLinkedQueue<>();
    /** AES keys of the key ids read so far (a few per writer session of the repository); cleared past {@link #MAX_CACHED_KEYS}. */
    private final Map<KeyId, SecretKeySpec> keys = new ConcurrentHashMap<>();
    static final int MAX_CACHED_KEYS = 4096;

    private RepositoryKey(Path file, byte[] master) {
        this.file = file;
        try {
            KDF hkdf = KDF.getInstance("HKDF-SHA256");
            this.namesKey = new SecretKeySpec(derive(hkdf, master, CryptoDescriptor.INFO_NAMES), "HmacSHA256");
            this.dataKey = derive(hkdf, master, CryptoDescriptor.INFO_DATA);
            this.checkKey = derive(hkdf, master, CryptoDescriptor.INFO_CHECK);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK lacks HKDF-SHA256: " + e, e);
        } finally {
            java.util.Arrays.fill(master, (byte) 0);
        }
    }

    private static byte[] derive(KDF hkdf, byte[] master, String info) throws GeneralSecurityException {
        return hkdf.deriveData(HKDFParameterSpec.ofExtract().addIKM(master).addSalt(CryptoDescriptor.HKDF_SALT)
                .thenExpand(info.getBytes(StandardCharsets.US_ASCII), CryptoDescriptor.KEY_BYTES));
    }

    /**
     * Makes a new random key and writes it to {@code file} (mode 0600, created only if absent).
     *
     * @throws RepositoryException KEY the file exists (it is never overwritten); IO it cannot be written
     */
    public static RepositoryKey create(Path file) throws RepositoryException {
        byte[] master = new byte[CryptoDescriptor.KEY_BYTES];
        RANDOM.nextBytes(master);
        String text = CryptoDescriptor.KEY_MAGIC + "\nversion " + CryptoDescriptor.KEY_VERSION + "\nkey "
                + HexFormat.of().formatHex(master) + "\n";
        try (FileChannel ch = FileChannel.open(file, java.util.Set.of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE),
                PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")))) {
            ByteBuffer b = ByteBuffer.wrap(text.getBytes(StandardCharsets.US_ASCII));
            while (b.hasRemaining()) {
                ch.write(b);
            }
            ch.force(true);
        } catch (FileAlreadyExistsException e) {
            throw new RepositoryException(RepositoryException.Code.KEY, "key file " + file
                    + " exists; not overwriting it (a key lost is a repository lost): choose another --key-file");
        } catch (IOException e) {
            try {
                Files.deleteIfExists(file);
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw RepositoryException.io("cannot write the key file " + file, e);
        }
        return new RepositoryKey(file, master);
    }

    /**
     * Reads a key file.
     *
     * @throws RepositoryException KEY the file is missing, unreadable or not a key file (the message names it)
     */
    public static RepositoryKey load(Path file) throws RepositoryException {
        byte[] bytes;
        try {
            if (Files.size(file) > CryptoDescriptor.MAX_KEY_FILE_BYTES) {
                throw new RepositoryException(RepositoryException.Code.KEY, "key file " + file + " is larger than a key file");
            }
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new RepositoryException(RepositoryException.Code.KEY, "key file " + file + " does not exist");
        } catch (IOException e) {
            throw new RepositoryException(RepositoryException.Code.KEY, "cannot read the key file " + file + ": " + e.getMessage(), e);
        }
        String[] lines = new String(bytes, StandardCharsets.US_ASCII).split("\n");
        if (lines.length < 3 || !lines[0].equals(CryptoDescriptor.KEY_MAGIC)
                || !lines[1].equals("version " + CryptoDescriptor.KEY_VERSION) || !lines[2].startsWith("key ")
                || !lines[2].substring(4).trim().matches("[0-9a-f]{" + 2 * CryptoDescriptor.KEY_BYTES + "}")) {
            throw new RepositoryException(RepositoryException.Code.KEY, "key file " + file + " is not a blksnap key file "
                    + "(version " + CryptoDescriptor.KEY_VERSION + "; `blksnap repo init --encrypt` makes one)");
        }
        return new RepositoryKey(file, HexFormat.of().parseHex(lines[2].substring(4).trim()));
    }

    /** The key file this key was read from or written to. */
    public Path file() {
        return file;
    }

    @Override
    public String toString() {
        return "key file " + file;
    }

    /** The value a repository's config records to check a key against, for the repository {@code repoId}. */
    String check(String repoId) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(checkKey, "HmacSHA256"));
            return HexFormat.of().formatHex(mac.doFinal((CryptoDescriptor.CHECK_PREFIX + repoId).getBytes(StandardCharsets.UTF_8)));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK lacks HmacSHA256: " + e, e);
        }
    }

    /** The name of a blob of these raw bytes: HMAC-SHA-256 under the names key. */
    Sha256 name(byte[] raw) {
        Mac mac = nameMacs.poll();
        if (mac == null) {
            try {
                mac = Mac.getInstance("HmacSHA256");
                mac.init(namesKey);
            } catch (GeneralSecurityException e) {
                throw new IllegalStateException("the JDK lacks HmacSHA256: " + e, e);
            }
        }
        try {
            return Sha256.read(ByteBuffer.wrap(mac.doFinal(raw)));
        } finally {
            nameMacs.offer(mac); // doFinal has reset it
        }
    }

    /** A key id: 16 random bytes naming one AES key derived from the data key. */
    record KeyId(long hi, long lo) {
        static KeyId read(byte[] b, int at) {
            ByteBuffer buf = ByteBuffer.wrap(b, at, CryptoDescriptor.KEY_ID_BYTES);
            return new KeyId(buf.getLong(), buf.getLong());
        }
    }

    /** A fresh key id and its key: one writer session seals every blob with it. */
    KeyId newKeyId() {
        byte[] id = new byte[CryptoDescriptor.KEY_ID_BYTES];
        RANDOM.nextBytes(id);
        return KeyId.read(id, 0);
    }

    private SecretKeySpec aesKey(KeyId id) {
        SecretKeySpec k = keys.get(id);
        if (k != null) {
            return k;
        }
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(dataKey, "HmacSHA256"));
            byte[] aes = mac.doFinal(ByteBuffer.allocate(CryptoDescriptor.KEY_ID_BYTES).putLong(id.hi()).putLong(id.lo()).array());
            k = new SecretKeySpec(aes, "AES");
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK lacks HmacSHA256: " + e, e);
        }
        if (keys.size() >= MAX_CACHED_KEYS) {
            keys.clear();
        }
        keys.put(id, k);
        return k;
    }

    private Cipher cipher() {
        Cipher c = ciphers.poll();
        if (c != null) {
            return c;
        }
        try {
            return Cipher.getInstance("AES/GCM/NoPadding");
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK lacks AES/GCM/NoPadding: " + e, e);
        }
    }

    /**
     * Seals {@code length} bytes of {@code in} from {@code inOffset} into {@code out} at
     * {@code outOffset}: key id, a random nonce, the ciphertext and the tag
     * ({@link CryptoDescriptor#OVERHEAD_BYTES} more than the plaintext). {@code in} may be
     * {@code out} with the plaintext at {@code outOffset + KEY_ID_BYTES + NONCE_BYTES} (sealed in place).
     *
     * @param aad bytes bound to the ciphertext (not stored by this method)
     * @return bytes written to {@code out}
     */
    int seal(KeyId id, byte[] aad, int aadOffset, int aadLength, byte[] in, int inOffset, int length, byte[] out,
             int outOffset) {
        byte[] nonce = new byte[CryptoDescriptor.NONCE_BYTES];
        RANDOM.nextBytes(nonce);
        ByteBuffer.wrap(out, outOffset, CryptoDescriptor.KEY_ID_BYTES).putLong(id.hi()).putLong(id.lo());
        System.arraycopy(nonce, 0, out, outOffset + CryptoDescriptor.KEY_ID_BYTES, nonce.length);
        Cipher c = cipher();
        try {
            c.init(Cipher.ENCRYPT_MODE, aesKey(id), new GCMParameterSpec(CryptoDescriptor.TAG_BITS, nonce));
            c.updateAAD(aad, aadOffset, aadLength);
            int n = c.doFinal(in, inOffset, length, out, outOffset + CryptoDescriptor.KEY_ID_BYTES + CryptoDescriptor.NONCE_BYTES);
            ciphers.offer(c);
            return CryptoDescriptor.KEY_ID_BYTES + CryptoDescriptor.NONCE_BYTES + n;
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("AES-GCM encryption failed: " + e, e);
        }
    }

    /**
     * Opens what {@link #seal} wrote ({@code length} bytes of {@code in} from {@code offset}).
     *
     * @return the plaintext
     * @throws GeneralSecurityException authentication failed: tampered, damaged, or sealed under another key
     */
    byte[] open(byte[] aad, int aadOffset, int aadLength, byte[] in, int offset, int length) throws GeneralSecurityException {
        if (length < CryptoDescriptor.OVERHEAD_BYTES) {
            throw new javax.crypto.AEADBadTagException("sealed bytes are " + length + ", shorter than key id, nonce and tag");
        }
        KeyId id = KeyId.read(in, offset);
        Cipher c = cipher();
        c.init(Cipher.DECRYPT_MODE, aesKey(id), new GCMParameterSpec(CryptoDescriptor.TAG_BITS, in,
                offset + CryptoDescriptor.KEY_ID_BYTES, CryptoDescriptor.NONCE_BYTES));
        c.updateAAD(aad, aadOffset, aadLength);
        int at = offset + CryptoDescriptor.KEY_ID_BYTES + CryptoDescriptor.NONCE_BYTES;
        byte[] plain = c.doFinal(in, at, length - (at - offset));
        ciphers.offer(c); // a failed one is dropped: its state after a bad tag is not worth trusting
        return plain;
    }

    /** A manifest sealed for the object {@code objectKey} ({@link CryptoDescriptor}: "BKSNMENC"). */
    byte[] sealManifest(String objectKey, byte[] manifest) {
        byte[] name = objectKey.getBytes(StandardCharsets.UTF_8);
        byte[] out = new byte[CryptoDescriptor.MANIFEST_HEADER_BYTES + CryptoDescriptor.OVERHEAD_BYTES + manifest.length];
        ByteBuffer.wrap(out).putLong(CryptoDescriptor.MANIFEST_MAGIC).putInt(CryptoDescriptor.MANIFEST_VERSION);
        byte[] aad = manifestAad(out, name);
        seal(newKeyId(), aad, 0, aad.length, manifest, 0, manifest.length, out, CryptoDescriptor.MANIFEST_HEADER_BYTES);
        return out;
    }

    /**
     * The manifest inside a sealed one.
     *
     * @param describe names the object in errors
     * @throws RepositoryException DAMAGED not a sealed manifest, or it does not authenticate
     */
    byte[] openManifest(String objectKey, String describe, byte[] sealed) throws RepositoryException {
        ByteBuffer b = ByteBuffer.wrap(sealed);
        if (sealed.length < CryptoDescriptor.MANIFEST_HEADER_BYTES + CryptoDescriptor.OVERHEAD_BYTES
                || b.getLong(0) != CryptoDescriptor.MANIFEST_MAGIC) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, "manifest " + describe
                    + " is not an encrypted manifest (the repository is encrypted)");
        }
        int version = b.getInt(CryptoDescriptor.MANIFEST_VERSION_OFFSET);
        if (version != CryptoDescriptor.MANIFEST_VERSION) {
            throw new RepositoryException(RepositoryException.Code.VERSION, "manifest " + describe
                    + " is sealed in version " + version + "; this blksnap reads " + CryptoDescriptor.MANIFEST_VERSION);
        }
        byte[] aad = manifestAad(sealed, objectKey.getBytes(StandardCharsets.UTF_8));
        try {
            return open(aad, 0, aad.length, sealed, CryptoDescriptor.MANIFEST_HEADER_BYTES,
                    sealed.length - CryptoDescriptor.MANIFEST_HEADER_BYTES);
        } catch (GeneralSecurityException e) {
            throw new RepositoryException(RepositoryException.Code.DAMAGED, "manifest " + describe
                    + " does not authenticate (tampered or damaged)");
        }
    }

    private static byte[] manifestAad(byte[] header, byte[] name) {
        byte[] aad = new byte[CryptoDescriptor.MANIFEST_HEADER_BYTES + name.length];
        System.arraycopy(header, 0, aad, 0, CryptoDescriptor.MANIFEST_HEADER_BYTES);
        System.arraycopy(name, 0, aad, CryptoDescriptor.MANIFEST_HEADER_BYTES, name.length);
        return aad;
    }
}
