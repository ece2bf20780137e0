using System.Text;
using SharpLens.Loading;

namespace SharpLens.Tests.Loading;

/// <summary>Each test writes a corrupted file and checks the specific error message.</summary>
public sealed class SafetensorsValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sharplens-st-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    private string WriteRaw(byte[] bytes)
    {
        var p = Path.Combine(_dir, $"f{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(p, bytes);
        return p;
    }

    /// <summary>A file with header <paramref name="json"/> followed by <paramref name="dataBytes"/> zero bytes.</summary>
    private string WriteFile(string json, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(json);
        return WriteRaw([.. BitConverter.GetBytes((ulong)h.Length), .. h, .. new byte[dataBytes]]);
    }

    private SafetensorsFormatException Fails(string path)
    {
        var e = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path));
        Assert.StartsWith(path + ":", e.Message);
        return e;
    }

    [Fact]
    public void TruncatedFile()
    {
        var p = WriteRaw([1, 2, 3]);
        Assert.Contains("file is 3 bytes, shorter than the 8-byte header length", Fails(p).Message);
    }

    [Fact]
    public void HeaderLengthPastEnd()
    {
        var p = WriteRaw([.. BitConverter.GetBytes(1000UL), .. "{}"u8]);
        Assert.Contains("header length 1000 bytes is past the end of the file (10 bytes", Fails(p).Message);
    }

    [Fact]
    public void InvalidJson()
    {
        var e = Fails(WriteFile("{\"a\": {\"dtype\": \"F32\",", 0));
        Assert.Contains("header: not valid JSON at line 1", e.Message);
        Assert.IsAssignableFrom<System.Text.Json.JsonException>(e.InnerException);
        Assert.Contains(e.InnerException!.Message, e.Message); // the parser's own words are passed on
    }

    [Fact]
    public void InvalidUtf8InHeaderNamesTheFile()
    {
        // A valid file with one byte of a tensor name flipped to 0xFF: it once escaped as InvalidOperationException.
        var h = Encoding.UTF8.GetBytes("{\"weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}");
        h[3] = 0xFF;
        var p = WriteRaw([.. BitConverter.GetBytes((ulong)h.Length), .. h, .. new byte[4]]);
        var e = Fails(p); // a SafetensorsFormatException (a SharpLensException) whose message starts with the path
        Assert.Contains("header: invalid UTF-8 at byte 3 (line 1)", e.Message);
        Assert.IsAssignableFrom<SharpLensException>(e);
    }

    [Fact]
    public void DuplicateTensorNameInHeader()
    {
        const string entry = "{\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}";
        var e = Fails(WriteFile($"{{\"a\": {entry}, \"a\": {entry}}}", 4));
        Assert.Contains("header: not valid JSON", e.Message);
        Assert.Contains("'a'", e.Message);
    }

    [Fact]
    public void EntryNotAnObjectOrMissingField()
    {
        Assert.Contains("tensor 'a': header entry must be an object", Fails(WriteFile("{\"a\": [1,2]}", 0)).Message);
        Assert.Contains("tensor 'a': missing 'data_offsets'", Fails(WriteFile("{\"a\": {\"dtype\":\"F32\",\"shape\":[1]}}", 4)).Message);
        Assert.Contains("tensor 'b': missing 'dtype'", Fails(WriteFile("{\"b\": {\"shape\":[1],\"data_offsets\":[0,4]}}", 4)).Message);
    }

    [Fact]
    public void UnknownDtype()
    {
        var e = Fails(WriteFile("{\"w\": {\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4));
        Assert.Contains("tensor 'w': unknown dtype 'F8_E4M3'; allowed: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL", e.Message);
    }

    [Fact]
    public void ShapeTimesDtypeNotRange()
    {
        var e = Fails(WriteFile("{\"w\": {\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24));
        Assert.Contains("tensor 'w': shape [2, 3] × 4 bytes (F32) = 24 bytes, but data_offsets [0, 20] span 20 bytes", e.Message);
    }

    [Fact]
    public void OverlappingRanges()
    {
        var e = Fails(WriteFile("{\"a\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}," +
                                " \"b\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12));
        Assert.Contains("tensors 'a' (bytes [0, 8)) and 'b' (bytes [4, 12)) overlap", e.Message);
    }

    [Fact]
    public void RangeOutsideDataBlock()
    {
        var e = Fails(WriteFile("{\"w\": {\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12));
        Assert.Contains("tensor 'w': data_offsets [0, 16] lie outside the data block of 12 bytes", e.Message);
    }

    [Fact]
    public void MetadataMustHoldStrings()
    {
        var e = Fails(WriteFile("{\"__metadata__\": {\"n\": 3}}", 0));
        Assert.Contains("'__metadata__' value 'n' must be a string", e.Message);
    }

    [Fact]
    public void GapsAreAllowedAndCounted()
    {
        // Tensor at [8, 12) of a 16-byte block: 12 uncovered bytes; the read still lands on the right bytes.
        var h = Encoding.UTF8.GetBytes("{\"w\": {\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}");
        byte[] data = [.. new byte[8], .. BitConverter.GetBytes(2.5f), .. new byte[4]];
        var p = WriteRaw([.. BitConverter.GetBytes((ulong)h.Length), .. h, .. data]);
        using var f = SafetensorsFile.Open(p);
        Assert.Equal(12, f.UnusedDataBytes);
        using var t = f.Read("w");
        Assert.Empty(t.shape);
        Assert.Equal(2.5f, t.item<float>());
    }

    [Fact]
    public void MisalignedTensorIsCopiedCorrectly()
    {
        // Header of odd length puts the data block at an odd file offset: F32 values cannot be viewed in place.
        var h = Encoding.UTF8.GetBytes("{\"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ");
        Assert.NotEqual(0, (8 + h.Length) % 4);
        var p = WriteRaw([.. BitConverter.GetBytes((ulong)h.Length), .. h, .. BitConverter.GetBytes(1.25f), .. BitConverter.GetBytes(-3f)]);
        using var f = SafetensorsFile.Open(p);
        using var t = f.Read("w");
        Assert.Equal([1.25f, -3f], t.data<float>().ToArray());
    }
}
