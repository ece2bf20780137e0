#!/usr/bin/env bash
# Packs SharpLens and SharpLens.Cli into a temporary feed and uses them as a new user would, outside this
# repository: a consumer project and the same program as a .NET 10 file-based app ('#:package') run a forward pass
# on the tiny fixture checkpoint (checked against TransformerLens's logits), and the tool installed from the feed
# runs 'sharplens version' and 'sharplens run'.
# Leaves nothing behind: packages restore into a temporary NUGET_PACKAGES (with the machine's package folder as a
# read-only fallback, so TorchSharp is not downloaded again), the tool goes to a temporary --tool-path.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
work="$(mktemp -d "${TMPDIR:-/tmp}/sharplens-packages.XXXXXX")"
trap 'rm -rf "$work"' EXIT
step() { echo "check-packages: $*"; }

version="$(dotnet msbuild "$repo/src/SharpLens/SharpLens.csproj" -getProperty:Version)"
fixture="$repo/tests/SharpLens.Tests/fixtures/tiny-gpt2"
feed="$work/feed"
machine_packages="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
# A SharpLens of this version in the machine's folder would shadow the one packed now.
rm -rf "$machine_packages/sharplens/$version" "$machine_packages/sharplens.cli/$version"

step "packing $version"
dotnet pack "$repo/src/SharpLens" -c Release -o "$feed" --nologo -v quiet
dotnet pack "$repo/src/SharpLens.Cli" -c Release -o "$feed" --nologo -v quiet
for p in SharpLens SharpLens.Cli; do
  for ext in nupkg snupkg; do [ -f "$feed/$p.$version.$ext" ] || { echo "check-packages: missing $p.$version.$ext" >&2; exit 1; }; done
done

export NUGET_PACKAGES="$work/packages"
cat > "$work/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources><add key="sharplens-local" value="$feed" /></packageSources>
  <fallbackPackageFolders><add key="machine" value="$machine_packages" /></fallbackPackageFolders>
</configuration>
XML

step "consumer project referencing SharpLens $version"
mkdir -p "$work/consumer"
cp "$work/nuget.config" "$work/consumer/"
cp "$repo/scripts/package-consumer.cs" "$work/consumer/Program.cs"
cat > "$work/consumer/Consumer.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="SharpLens" Version="$version" />
  </ItemGroup>
</Project>
XML
dotnet run --project "$work/consumer" -c Release -- "$fixture"
for f in buildTransitive/SharpLens.targets PACKAGE.md lib/net10.0/SharpLens.xml; do
  [ -f "$NUGET_PACKAGES/sharplens/$version/$f" ] || { echo "check-packages: the SharpLens package lacks $f" >&2; exit 1; }
done
if ! grep -q GLIBCXX_3.4.32 /usr/lib/x86_64-linux-gnu/libstdc++.so.6 2>/dev/null && [ -f /usr/lib/x86_64-linux-gnu/libstdc++.so.6 ]; then
  # Proof that the package's buildTransitive step is what makes it load here: without it the first tensor fails.
  step "same consumer with the opt-out -p:SharpLensPatchLibTorchSharp=false must fail on this libstdc++"
  dotnet build "$work/consumer" -c Release -o "$work/unpatched" -p:SharpLensPatchLibTorchSharp=false --nologo -v quiet -clp:NoSummary
  if (dotnet "$work/unpatched/Consumer.dll" "$fixture") > "$work/unpatched.txt" 2>&1; then
    echo "check-packages: the consumer ran without the libstdc++ fix; is the check still needed?" >&2; exit 1
  fi
  grep -q "Failed to load native component LibTorchSharp" "$work/unpatched.txt" || { cat "$work/unpatched.txt" >&2; exit 1; }
fi

step "file-based app with #:package SharpLens@$version"
mkdir -p "$work/app"
cp "$work/nuget.config" "$work/app/"
{ echo "#:package SharpLens@$version"; cat "$repo/scripts/package-consumer.cs"; } > "$work/app/consumer.cs"
(cd "$work/app" && dotnet run consumer.cs -- "$fixture")

step "dotnet tool install SharpLens.Cli $version"
(cd "$work" && dotnet tool install SharpLens.Cli --version "$version" --tool-path "$work/tools" --add-source "$feed")
"$work/tools/sharplens" version | tee "$work/version.txt"
grep -qx "sharplens $version" "$work/version.txt"
echo '[[999, 624, 683, 896, 577], [999, 5, 499, 820, 131]]' > "$work/tokens.json"
"$work/tools/sharplens" run --model "$fixture" --tokens-file "$work/tokens.json" --out "$work/acts.safetensors" | tee "$work/run.txt"
grep -q "logits \[2, 5, 1000\]" "$work/run.txt"
[ -s "$work/acts.safetensors" ]
for example in "$repo"/examples/*.cs "$repo/README.md"; do
  grep -q "#:package SharpLens@$version" "$example" \
    || { echo "check-packages: $example's should name '#:package SharpLens@$version'" >&2; exit 1; }
done
step "ok"
